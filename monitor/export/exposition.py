"""Tidemark's families rendered straight from a snapshot to exposition text.

Why: at 1,000 topics x 4 partitions a scrape is ~100,000 series. Building
prometheus-client Metric objects (a dict of labels per sample, sorted and
validated again per sample) took ~2 s a scrape; writing the lines from the
snapshot with label strings built once per label set takes a fraction of it.

The output is the bytes prometheus-client's `generate_latest` (text 0.0.4) and
`openmetrics.generate_latest` (OpenMetrics 1.0) write for the same families:
same HELP and TYPE lines, labels sorted by name, values formatted by
`floatToGoString`. tests/unit/export/test_exposition.py compares the two.
Every catalogue name and label name is a legacy Prometheus name, so the
escaping schemes of the Accept header change nothing here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from monitor.export.catalogue import METRICS, MetricSpec, ProductSource
from monitor.export.snapshot import ProductView, Snapshot
from monitor.stats import Histogram

_LABEL_CACHE_MAX = 200_000  # label strings kept between scrapes; ~100 B each


def _escape_value(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(d: float) -> str:
    """floatToGoString, with the common cases (bools, whole numbers, finite floats) inlined."""
    kind = type(d)
    if kind is bool:
        return "1.0" if d else "0.0"
    if kind is int:
        if 0 <= d < 1_000_000:
            return f"{d}.0"
        d = float(d)
    if type(d) is float and -math.inf < d < math.inf:
        s = repr(d)
        dot = s.find(".")
        if d > 0 and dot > 6:  # Go switches to exponents sooner (timestamps: 1.7e+09)
            mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
            return f"{mantissa}e+{dot - 1:02d}"
        return s
    return str(floatToGoString(d))  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class _Family:
    spec: MetricSpec
    headers: tuple[str, str]  # (text 0.0.4, OpenMetrics)
    sample: str  # sample name (counters: with _total)
    order: tuple[int, ...]  # label positions in name order
    names: tuple[str, ...]  # label names, sorted
    le_at: int  # histograms: where `le` goes among the sorted names


def _family(spec: MetricSpec) -> _Family:
    kind = {"counter": "counter", "histogram": "histogram"}.get(spec.type, "gauge")
    text_name = spec.name + "_total" if kind == "counter" else spec.name
    text_help = spec.help.replace("\\", r"\\").replace("\n", r"\n")
    om_help = _escape_value(spec.help)
    headers = (
        f"# HELP {text_name} {text_help}\n# TYPE {text_name} {kind}\n",
        f"# HELP {spec.name} {om_help}\n# TYPE {spec.name} {kind}\n",
    )
    order = tuple(sorted(range(len(spec.labels)), key=lambda i: spec.labels[i]))
    names = tuple(spec.labels[i] for i in order)
    le_at = sum(1 for n in names if n < "le")
    return _Family(spec, headers, text_name, order, names, le_at)


_FAMILIES = tuple(_family(spec) for spec in METRICS)


class Renderer:
    """Renders snapshots; keeps what did not change since the last scrape.

    Each product's lines of each per-product family (`ProductSource`) are cached
    with the product's view and reused while the next scrape's view is equal to
    it: at 1,000 topics most products did not change between two scrapes, so a
    scrape compares views instead of formatting ~100,000 lines. Volatile families
    and the process-wide ones are rendered every time. Label strings and
    unchanged process histograms are kept too.
    """

    def __init__(self, families: Sequence[_Family] = _FAMILIES) -> None:
        self._families = families
        # Position of each family among the per-product ones, -1 for the others.
        slots: list[int] = []
        self._per_product: list[_Family] = []
        for family in families:
            if isinstance(family.spec.samples, ProductSource):
                slots.append(len(self._per_product))
                self._per_product.append(family)
            else:
                slots.append(-1)
        self._slots = tuple(slots)
        self._volatile = tuple(
            i
            for i, f in enumerate(self._per_product)
            if isinstance(f.spec.samples, ProductSource) and f.spec.samples.volatile
        )
        self._labels: dict[tuple[str, ...], str] = {}  # names + values -> 'a="x",b="y"'
        # name + label values -> (histogram, lines): a histogram is re-rendered only
        # when an event changed it; most products' are unchanged between scrapes.
        self._histograms: dict[tuple[str, ...], tuple[Histogram, str]] = {}
        # (product, topic) -> (its view, its lines of each per-product family), as of
        # the last scrape; rebuilt every scrape, so it holds only current products.
        self._products: dict[tuple[str, str], tuple[ProductView, list[str]]] = {}
        self.rendered_products = 0  # product blocks formatted (not reused) by the last render

    def render(self, snapshot: Snapshot, openmetrics: bool) -> str:
        """The families' text, without OpenMetrics' `# EOF` (other collectors follow)."""
        if len(self._labels) > _LABEL_CACHE_MAX:
            self._labels.clear()  # topics come and go: start over rather than grow
        if len(self._histograms) > _LABEL_CACHE_MAX // 10:
            self._histograms.clear()
        blocks = self._product_blocks(snapshot.products)
        out: list[str] = []
        append = out.append
        header = 1 if openmetrics else 0
        for family, slot in zip(self._families, self._slots, strict=True):
            append(family.headers[header])
            if slot >= 0:
                out.extend(lines[slot] for lines in blocks)
                continue
            spec = family.spec
            if spec.type == "histogram":
                self._histogram(family, snapshot, append)
                continue
            self._lines(family, spec.samples(snapshot), append)
        return "".join(out)

    def _product_blocks(self, views: Sequence[ProductView]) -> list[list[str]]:
        """Each product's lines of every per-product family, reused where its view is equal."""
        cache, fresh = self._products, {}
        blocks: list[list[str]] = []
        rendered = 0
        for view in views:
            key = (view.config.name, view.config.topic)
            hit = cache.get(key)
            if hit is not None and hit[0] == view:
                lines = hit[1]
                if self._volatile:
                    lines = list(lines)
                    for slot in self._volatile:
                        lines[slot] = self._block(self._per_product[slot], view)
            else:
                lines = [self._block(family, view) for family in self._per_product]
                rendered += 1
            fresh[key] = (view, lines)
            blocks.append(lines)
        self._products = fresh
        self.rendered_products = rendered
        return blocks

    def _block(self, family: _Family, view: ProductView) -> str:
        source = family.spec.samples
        assert isinstance(source, ProductSource)
        if family.spec.type == "histogram":
            parts = []
            for labels, value in source.of(view):
                assert isinstance(value, Histogram)
                parts.append(self._histogram_lines(family, labels, value))
            return "".join(parts)
        out: list[str] = []
        self._lines(family, source.of(view), out.append)
        return "".join(out)

    def _lines(
        self,
        family: _Family,
        samples: Iterable[tuple[Sequence[str], float | Histogram]],
        append: Callable[[str], None],
    ) -> None:
        name = family.sample
        for labels, value in samples:
            label_str = self._label_str(family, labels)
            assert not isinstance(value, Histogram)
            if label_str:
                append(f"{name}{{{label_str}}} {_number(value)}\n")
            else:
                append(f"{name} {_number(value)}\n")

    def _label_str(self, family: _Family, values: Sequence[str]) -> str:
        key = (*family.names, *values)
        cached = self._labels.get(key)
        if cached is None:
            names, order = family.names, family.order
            cached = ",".join(
                f'{names[i]}="{_escape_value(values[j])}"' for i, j in enumerate(order)
            )
            self._labels[key] = cached
        return cached

    def _histogram(
        self, family: _Family, snapshot: Snapshot, append: Callable[[str], None]
    ) -> None:
        name = family.spec.name
        for labels, value in family.spec.samples(snapshot):
            assert isinstance(value, Histogram)
            key = (name, *labels)
            cached = self._histograms.get(key)
            if cached is not None and _same(cached[0], value):
                append(cached[1])
                continue
            text = self._histogram_lines(family, labels, value)
            self._histograms[key] = (value.copy(), text)
            append(text)

    @staticmethod
    def _histogram_lines(family: _Family, labels: Sequence[str], value: Histogram) -> str:
        name, names, order, at = family.spec.name, family.names, family.order, family.le_at
        pieces = [f'{names[i]}="{_escape_value(labels[j])}"' for i, j in enumerate(order)]
        before = "".join(piece + "," for piece in pieces[:at])
        after = "".join("," + piece for piece in pieces[at:])
        buckets = value.cumulative()
        lines = [
            f'{name}_bucket{{{before}le="{le}"{after}}} {_number(count)}\n' for le, count in buckets
        ]
        if float(buckets[0][0]) >= 0:
            braces = "{" + ",".join(pieces) + "}" if pieces else ""
            lines.append(f"{name}_count{braces} {_number(buckets[-1][1])}\n")
            lines.append(f"{name}_sum{braces} {_number(value.total)}\n")
        return "".join(lines)


def _same(a: Histogram, b: Histogram) -> bool:
    return a.counts == b.counts and a.total == b.total and a.bounds == b.bounds


class SnapshotCollector(Collector):
    """A collector whose families the server can render directly (see TidemarkRegistry)."""

    def snapshot(self) -> Snapshot:
        raise NotImplementedError


class TidemarkRegistry(CollectorRegistry):
    """Tidemark's collector plus the process ones; /metrics renders the former directly.

    `collect()` still yields every family as prometheus-client objects, so
    `generate_latest(registry)` and `name[]` filtering work unchanged.
    """

    def __init__(self, tidemark: SnapshotCollector) -> None:
        super().__init__(auto_describe=False)
        self.tidemark = tidemark
        self.others = CollectorRegistry(auto_describe=False)
        self.register(tidemark)
        self._renderer = Renderer()

    def register_other(self, collector: Collector) -> None:
        self.register(collector)
        self.others.register(collector)

    def exposition(self, encoder: Callable[[CollectorRegistry], bytes], openmetrics: bool) -> bytes:
        """Tidemark's families, then the others through prometheus-client's `encoder`."""
        ours = self._renderer.render(self.tidemark.snapshot(), openmetrics)
        return ours.encode() + encoder(self.others)
