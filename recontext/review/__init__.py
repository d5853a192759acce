"""Human ratings: the CSV store and its summary. Imports neither torch nor diffusers."""

from .store import HEADER, RatingStore, neutralise
from .queue import OPEN_SECONDS, BlindItem, blind_order, final, next_item, rate
from .summary import agreement, bootstrap_ci, report, summarize, summary_plot, win_rates

__all__ = ["HEADER", "RatingStore", "neutralise", "summarize", "win_rates", "agreement",
           "bootstrap_ci", "report", "summary_plot", "BlindItem", "blind_order", "next_item", "rate",
           "final", "OPEN_SECONDS"]
