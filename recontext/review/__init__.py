"""Human ratings: the CSV stores (Likert ratings, pairwise votes) and their summary.
Imports neither torch nor diffusers."""

from .store import HEADER, RatingStore, neutralise
from .votes import CHOICES, VoteStore
from .queue import (OPEN_SECONDS, BlindItem, BlindPair, blind_order, final, next_item, next_pair,
                    rate, target_raters, vote)
from .summary import (agreement, bootstrap_ci, bradley_terry, full_report, report, serve, summarize,
                      summary_plot, win_rates)

__all__ = ["HEADER", "RatingStore", "VoteStore", "CHOICES", "neutralise", "summarize", "win_rates",
           "agreement", "bootstrap_ci", "bradley_terry", "report", "full_report", "serve",
           "summary_plot", "BlindItem", "BlindPair", "blind_order", "next_item", "next_pair", "rate",
           "vote", "final", "target_raters", "OPEN_SECONDS"]
