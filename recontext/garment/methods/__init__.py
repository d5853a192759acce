"""The garment methods: one module each, with a `SPEC` and

    adapt(bench, garment, prompt, settings, seed, tick=None) -> Adapted

(reading the garment: a prediction, embeddings or a fine-tune), and optionally
`COMPONENTS` = {need: load(bench, settings)}: how the method loads what its spec `needs`
beyond what the model owner shares (a checkpoint, an extra model; loaded once before the
first garment, timed as setup), `todo(bench, garment, settings,
seed)` (steps of adapting work still to do, for the progress bar) and `work(settings)`
(the adapting work for the ZeroGPU estimate: {"encodes", "evaluations", "finetune_steps"}).
"""
