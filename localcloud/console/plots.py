"""Training curves per epoch, read from a training job's log lines with its own
MetricDefinitions (as SageMaker does), and drawn with matplotlib: SVG for the page, PNG
files in the state dir for terminal users."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EPOCH_METRIC = "epoch"
# (panel title, metric name prefix); the rest of the name is the curve's label
PANELS = (("loss", "_loss"), ("accuracy", "_acc"))

_matplotlib_lock = threading.Lock()  # pyplot-free, but fonts and caches are shared


@dataclass
class EpochMetrics:
    """One row per epoch: ``rows[i] = {"epoch": n, "train_loss": ..., ...}``."""

    rows: list[dict[str, float]] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)

    def series(self, name: str) -> tuple[list[float], list[float]]:
        points = [(r[EPOCH_METRIC], r[name]) for r in self.rows if name in r]
        return [x for x, _ in points], [y for _, y in points]

    @property
    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update({name: None for name in row if name != EPOCH_METRIC})
        return list(seen)


def compile_definitions(definitions: Iterable[Mapping[str, str]]) -> list[tuple[str, re.Pattern]]:
    compiled = []
    for definition in definitions:
        try:
            compiled.append((definition["Name"], re.compile(definition["Regex"])))
        except (KeyError, re.error):
            continue  # SageMaker refuses these at CreateTrainingJob; nothing to plot
    return compiled


def parse_epochs(lines: Iterable[str], definitions: Iterable[Mapping[str, str]]) -> EpochMetrics:
    """Apply the job's metric regexes to its log lines. A line on which the ``epoch`` metric
    matches is one epoch's row (a later line for the same epoch replaces it: every host
    may print it); the other matches keep the last value of each metric (``final``)."""
    patterns = compile_definitions(definitions)
    by_epoch: dict[float, dict[str, float]] = {}
    final: dict[str, float] = {}
    for line in lines:
        values: dict[str, float] = {}
        for name, pattern in patterns:
            match = pattern.search(line)
            if match is None or pattern.groups < 1:
                continue
            try:
                values[name] = float(match.group(1))
            except (TypeError, ValueError):
                continue
        final.update(values)
        if EPOCH_METRIC in values:
            by_epoch[values[EPOCH_METRIC]] = values
    return EpochMetrics([by_epoch[e] for e in sorted(by_epoch)], final)


def _figure(metrics: EpochMetrics, title: str, id_prefix: str) -> Any:
    from matplotlib.figure import Figure

    panels = [(panel, [n for n in metrics.names if n.endswith(suffix)]) for panel, suffix in PANELS]
    panels = [(panel, names) for panel, names in panels if names]
    others = [n for n in metrics.names if not any(n in names for _, names in panels)]
    if others:
        panels.append(("other", others))
    figure = Figure(figsize=(4.2 * max(1, len(panels)), 3.2), layout="constrained")
    figure.suptitle(title, fontsize=10)
    for index, (panel, names) in enumerate(panels or [("no metrics yet", [])]):
        axes = figure.add_subplot(1, max(1, len(panels)), index + 1)
        axes.set_title(panel, fontsize=9)
        axes.set_xlabel("epoch", fontsize=8)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        for name in names:
            xs, ys = metrics.series(name)
            style = "--" if name.startswith("train") else "-"
            axes.plot(xs, ys, style, marker="o", markersize=4, label=name, gid=f"{id_prefix}{name}")
        if names:
            axes.legend(fontsize=7)
            axes.xaxis.get_major_locator().set_params(integer=True)
    return figure


def render(metrics: EpochMetrics, title: str, fmt: str, id_prefix: str = "curve-") -> bytes:
    """The curves as ``svg`` (text kept as text; every curve a group ``<id_prefix><metric>``
    holding one marker per epoch) or ``png``."""
    import matplotlib

    with _matplotlib_lock:
        figure = _figure(metrics, title, id_prefix)
        out = io.BytesIO()
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "console"}):
            figure.savefig(out, format=fmt, dpi=110)
    return out.getvalue()


def render_trials(
    values: Sequence[tuple[int, float | None]], metric: str, maximize: bool, title: str, fmt: str
) -> bytes:
    """A tuning job's objective per trial (a marker each; trials without one are left out)
    and the best so far as a step line, as ``svg`` (group ``trial-objective``) or ``png``."""
    import matplotlib
    from matplotlib.figure import Figure

    scored = [(trial, value) for trial, value in values if value is not None]
    best: list[float] = []
    for _, value in scored:
        best.append(value if not best else (max if maximize else min)(best[-1], value))
    with _matplotlib_lock:
        figure = Figure(figsize=(5.2, 3.2), layout="constrained")
        figure.suptitle(title, fontsize=10)
        axes = figure.add_subplot(1, 1, 1)
        axes.set_xlabel("trial", fontsize=8)
        axes.set_ylabel(metric, fontsize=8)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        if scored:
            xs = [trial for trial, _ in scored]
            axes.plot(xs, [v for _, v in scored], "o", label=metric, gid="trial-objective")
            axes.step(xs, best, "-", where="post", label="best so far", gid="trial-best")
            axes.legend(fontsize=7)
            axes.xaxis.get_major_locator().set_params(integer=True)
        else:
            axes.set_title("no objective yet", fontsize=9)
        out = io.BytesIO()
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "console"}):
            figure.savefig(out, format=fmt, dpi=110)
    return out.getvalue()


def write_png(metrics: EpochMetrics, title: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(render(metrics, title, "png"))
    tmp.replace(path)
    return path


def epochs_table(metrics: EpochMetrics) -> tuple[list[str], list[list[float | None]]]:
    names = [EPOCH_METRIC, *metrics.names]
    return names, [[row.get(name) for name in names] for row in metrics.rows]


def metric_lines(events: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(event.get("message", "")) for event in events]
