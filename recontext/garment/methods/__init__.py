"""The garment methods: one module each, with a `SPEC` and

    adapt(bench, garment, prompt, settings, seed, tick=None) -> Adapted

(reading the garment: a prediction, embeddings or a fine-tune), and optionally
`load(bench, settings)` (one-off loading, timed as setup), `todo(bench, garment, settings,
seed)` (steps of adapting work still to do, for the progress bar) and `work(settings)`
(the adapting work for the ZeroGPU estimate: {"encodes", "evaluations", "finetune_steps"}).
"""
