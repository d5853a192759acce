"""Shared by the review tests: the view token a rater gets when an item is shown to them."""

from recontext.review import blind_order
from recontext.review import token as tokens
from recontext.review.names import rater_key


def view(data, rater: str, run_id: str) -> str:
    """The token `next_item` would hand `rater` for `run_id` (its blind order); "" when
    there is none to make (a blank name, an unknown item), so `rate` names the real problem."""
    try:
        key = rater_key(rater)
        n = len(data.runs.get(run_id)["outputs"])
        return tokens.issue(data.secret, key, run_id, "likert", blind_order(data.secret, key, run_id, n))
    except (ValueError, OSError):
        return ""
