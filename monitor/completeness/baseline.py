"""Expected volume learned from history: the same window slot in earlier periods.

Why: a product without manifests still has a rhythm (orders per minute on a
Monday); a window far below the median of its slot is probably missing data.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable
from typing import Literal

Statistic = Literal["median", "mean", "min"]
_STATISTICS: dict[str, Callable[[deque[int]], float]] = {
    "median": statistics.median,
    "mean": statistics.fmean,
    "min": lambda values: float(min(values)),
}


class Baseline:
    """Counts of the same window slot in the last `periods` periods (slots x periods ints)."""

    def __init__(
        self, *, slots: int, periods: int, min_periods: int, statistic: Statistic, ratio: float
    ) -> None:
        self._slots = slots
        self._periods = periods
        self._min_periods = min_periods
        self._stat = _STATISTICS[statistic]
        self._ratio = ratio
        self._history: dict[int, deque[int]] = {}

    def record(self, k: int, observed: int) -> None:
        hist = self._history.get(k % self._slots)
        if hist is None:
            hist = self._history[k % self._slots] = deque(maxlen=self._periods)
        hist.append(observed)

    def expected(self, k: int) -> int | None:
        """ratio x statistic of earlier periods; None until min_periods are known or if 0."""
        hist = self._history.get(k % self._slots)
        if hist is None or len(hist) < self._min_periods:
            return None
        value = math.floor(self._stat(hist) * self._ratio)
        return value if value > 0 else None
