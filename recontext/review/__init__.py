"""Human ratings: the CSV store and its summary. Imports neither torch nor diffusers."""

from .store import HEADER, RatingStore, neutralise
from .summary import agreement, bootstrap_ci, report, summarize, win_rates

__all__ = ["HEADER", "RatingStore", "neutralise", "summarize", "win_rates", "agreement",
           "bootstrap_ci", "report"]
