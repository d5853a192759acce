"""The safety checker: on by default on Spaces, off by a variable, a flagged output replaced
by a notice (the tiny presets' checker has the real one's interface and files)."""

import numpy as np
import pytest

from recontext import safety


def test_on_by_default_on_spaces_only(monkeypatch):
    monkeypatch.delenv("RECONTEXT_SAFETY_CHECKER", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert not safety.enabled()
    monkeypatch.setenv("SPACE_ID", "someone/recontext")
    assert safety.enabled()
    monkeypatch.setenv("RECONTEXT_SAFETY_CHECKER", "0")
    assert not safety.enabled()
    monkeypatch.delenv("SPACE_ID")
    monkeypatch.setenv("RECONTEXT_SAFETY_CHECKER", "1")
    assert safety.enabled()


def test_a_flagged_output_becomes_a_notice(studio, monkeypatch):
    monkeypatch.delenv("RECONTEXT_SAFETY_CHECKER", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    plain = np.asarray(studio.generate("a red circle on a blue background", steps=4, seed=3))
    monkeypatch.setenv("RECONTEXT_SAFETY_CHECKER", "1")
    checker, _, _ = studio.models.safety
    assert type(checker).__name__ == "StableDiffusionSafetyChecker"
    passed = np.asarray(studio.generate("a red circle on a blue background", steps=4, seed=3))
    assert np.array_equal(passed, plain)  # the tiny checker knows no concepts: nothing flagged
    weights = checker.concept_embeds_weights.detach().clone()
    try:
        checker.concept_embeds_weights.data.fill_(-1.0)  # every cosine now exceeds its threshold
        hidden = studio.generate("a red circle on a blue background", steps=4, seed=3)
    finally:
        checker.concept_embeds_weights.data.copy_(weights)
    assert hidden.size == (plain.shape[1], plain.shape[0])
    assert np.array_equal(np.asarray(hidden), np.asarray(safety.notice(hidden.size)))
    with pytest.raises(AssertionError):
        assert np.array_equal(np.asarray(hidden), plain)
