"""Which token of the target prompt corresponds to which token of the source prompt.

Prompts are aligned word by word (difflib), then token by token inside each word, so a
word swap whose words have different token counts still maps the target word onto the
source word (prompt-to-prompt's word swap), while inserted words keep their own
attention (its refinement). Positions count the start token, as the text encoder does.
"""

from __future__ import annotations

import difflib


def _offsets(words, count) -> list[int]:
    out, pos = [], 1  # position 0 is the start token
    for w in words:
        out.append(pos)
        pos += count(w)
    return out + [pos]  # the end token's position


def align(source: str, target: str, count, length: int) -> list[int]:
    """mapper[j]: the source position whose attention target position j takes, or -1
    (keep its own). `count(word)` is how many tokens the tokenizer makes of a word;
    `length` the text encoder's sequence length."""
    sw, tw = source.split(), target.split()
    so, to = _offsets(sw, count), _offsets(tw, count)
    mapper = [-1] * max(length, to[-1] + 1)  # words past the encoder's length are cut below
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=sw, b=tw, autojunk=False).get_opcodes():
        if tag not in ("equal", "replace"):
            continue  # inserted words keep their own maps; deleted ones have no target
        s0, s1, t0, t1 = so[i1], so[i2], to[j1], to[j2]
        for k in range(t1 - t0):  # spread the source tokens over the target's
            mapper[t0 + k] = s0 + k * (s1 - s0) // (t1 - t0) if tag == "replace" else s0 + k
    mapper[0] = 0
    end_s, end_t = so[-1], to[-1]
    for k in range(length - end_t):  # end token and padding, shifted together
        mapper[end_t + k] = min(end_s + k, length - 1)
    return [m if m < length else -1 for m in mapper[:length]]


def changed(source: str, target: str, count) -> list[int]:
    """Positions of the target's tokens that are not equal to the source's: the words the
    edit is about (all of the target's words when nothing changed)."""
    sw, tw = source.split(), target.split()
    to = _offsets(tw, count)
    out = []
    for tag, _, _, j1, j2 in difflib.SequenceMatcher(a=sw, b=tw, autojunk=False).get_opcodes():
        if tag != "equal":
            out += range(to[j1], to[j2])
    return out or list(range(1, to[-1]))


def positions(target: str, word: str, count) -> list[int]:
    """Token positions of every occurrence of `word` in `target`."""
    tw = target.split()
    to = _offsets(tw, count)
    found = [p for i, w in enumerate(tw) if w == word for p in range(to[i], to[i + 1])]
    if not found:
        raise ValueError(f"re-weighted word {word!r} is not a word of the target prompt")
    return found
