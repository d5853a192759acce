"""Rater names as one key: `Zoe`, `ZOE`, `ｚｏｅ` (full width) and `zоe` (a Cyrillic о) are
one rater. Without sign-in a name is only what was typed, so this cannot prove who rated;
it stops a variant of one name from counting as a second rater.

The key is NFKC (full-width and compatibility forms folded), casefolded, with invisible
format characters dropped, runs of spaces made one, and letters that look like Latin
letters in other scripts mapped to them (a small confusables skeleton after Unicode
TR39, for the Cyrillic and Greek letters that pass for Latin ones).
"""

from __future__ import annotations

import unicodedata

# lower-case look-alikes (after casefold) -> the Latin letter they pass for
CONFUSABLES = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i", "ј": "j", "к": "k",
    "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "ѕ": "s", "т": "t", "у": "y", "ў": "y",
    "х": "x", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ɡ": "g",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "ϲ": "c", "ϳ": "j",
    # Latin look-alikes
    "ı": "i", "ł": "l", "ß": "ss", "ſ": "s", "ɑ": "a", "ο": "o",
}


def rater_key(name: str) -> str:
    """The one key of a rater name (see the module's text)."""
    text = unicodedata.normalize("NFKC", name)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = " ".join(text.casefold().split())
    text = "".join(CONFUSABLES.get(ch, ch) for ch in text)
    return unicodedata.normalize("NFKC", text)
