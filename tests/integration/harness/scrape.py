"""Scrape a /metrics endpoint over HTTP and look samples up by name and labels.

Parsing uses prometheus_client's own text parser, so a test sees what Prometheus would.
Sample names are as exposed: counters carry `_total`, histograms `_bucket`/`_sum`/`_count`.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

LabelSet = frozenset[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def _fmt(labels: LabelSet | dict[str, str]) -> str:
    items = sorted(labels.items() if isinstance(labels, dict) else labels)
    return "{" + ",".join(f'{k}="{v}"' for k, v in items) + "}"


class Samples:
    """One scrape. Label values given as keywords may be ints (partition=0)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[Sample] = [
            Sample(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
        self.looked_up: set[str] = set()  # names a predicate asked about, for failure output

    def _matching(self, name: str, labels: dict[str, object]) -> list[Sample]:
        self.looked_up.add(name)
        want = {k: str(v) for k, v in labels.items()}
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in want.items())
        ]

    def value(self, name: str, /, **labels: object) -> float:
        """The one sample `name` whose labels include `labels`; AssertionError otherwise."""
        found = self._matching(name, labels)
        if len(found) == 1:
            return found[0].value
        wanted = _fmt({k: str(v) for k, v in labels.items()})
        if not found:
            available = [_fmt(s.labels) for s in self.samples if s.name == name]
            raise AssertionError(
                f"no sample {name}{wanted}; available label sets: {available or 'none'}"
            )
        raise AssertionError(
            f"{name}{wanted} is ambiguous, give more labels: {[_fmt(s.labels) for s in found]}"
        )

    def values(self, name: str, /) -> dict[LabelSet, float]:
        """Every sample `name`, keyed by its frozen label set."""
        return {frozenset(s.labels.items()): s.value for s in self._matching(name, {})}

    def has(self, name: str, /, **labels: object) -> bool:
        """Whether at least one sample `name` has labels including `labels`."""
        return bool(self._matching(name, labels))

    def total(self, name: str, /, **labels: object) -> float:
        """Sum over the samples `name` whose labels include `labels` (0 when none)."""
        return sum(s.value for s in self._matching(name, labels))

    def lines(self, names: set[str] | None = None) -> str:
        """Exposition lines for the given sample names (all non-comment lines if None)."""
        picked = []
        for line in self.text.splitlines():
            if not line or line.startswith("#"):
                continue
            metric = line.split("{", 1)[0].split(" ", 1)[0]
            if names is None or metric in names:
                picked.append(line)
        return "\n".join(picked)


def scrape(url: str, timeout: float = 5.0) -> Samples:
    """GET `url` (a /metrics endpoint) and parse it; AssertionError on a non-200 status."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        if response.status != 200:
            raise AssertionError(f"GET {url} answered {response.status}")
        return Samples(response.read().decode())


def wait_for(
    url: str,
    predicate: Callable[[Samples], bool],
    timeout: float = 15.0,
    interval: float = 0.1,
) -> Samples:
    """Scrape until `predicate` holds and return that scrape.

    An exception inside the predicate (say, a sample not exported yet) counts as "not
    yet". On timeout, raises AssertionError with the last problem and the last scrape's
    lines for the metrics the predicate looked at.
    """
    deadline = time.monotonic() + timeout
    last: Samples | None = None
    problem = "predicate was false"
    while True:
        try:
            last = scrape(url)
            if predicate(last):
                return last
            problem = "predicate was false"
        except (AssertionError, KeyError, OSError, ValueError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if last is None:
        raise AssertionError(f"{url} never answered within {timeout}s: {problem}")
    shown = last.lines(last.looked_up or None)
    if len(shown) > 6000:
        shown = shown[:6000] + "\n..."
    raise AssertionError(
        f"condition not met within {timeout}s ({problem}); last scrape of {url}:\n{shown}"
    )
