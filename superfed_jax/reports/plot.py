"""Figures of the reports (matplotlib's object API on an Agg canvas: headless, no global state).

Every figure is written twice, as ``NAME.png`` and ``NAME.svg`` (`save_figure`): the PNG for report.md, the
SVG for a paper. Every artist that carries data has a ``gid`` (``pareto-SERIES``, ``curve-PANEL-SERIES``,
``search-PANEL-front`` ...), which the SVG keeps as the ``id`` of its group, so a figure can be checked or
restyled from the SVG alone.

* `plot_pareto`: test accuracy against forward MACs, one line per series, optional error bars (seeds).
* `plot_curves`: accuracy against round, one panel per (split or arch), a line per series with a band.
* `plot_search`: a post-training search's candidates, their non-dominated front as a step line, the run's
  tracked subnets and the budget, one panel per budget.
"""
import math
import os
import re
from typing import NamedTuple, Optional

from superfed_jax import _extras
from superfed_jax.federated import metric as metric_lib

__all__ = ["Curve", "Panel", "SearchPanel", "gid_of", "save_figure", "plot_pareto", "plot_curves",
           "plot_search"]


def _new_figure(width: float, height: float):
    """A Figure on its own Agg canvas; ImportError naming the 'plots' extra without matplotlib."""
    # Imported here: only reports need matplotlib (the optional 'plots' extra). The object API with an
    # explicit Agg canvas touches no global backend state (no pyplot), so it works headless and inside any
    # host program.
    FigureCanvasAgg = _extras.require("matplotlib.backends.backend_agg", "plots").FigureCanvasAgg
    Figure = _extras.require("matplotlib.figure", "plots").Figure
    figure = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(figure)
    return figure


def gid_of(*parts) -> str:
    """An SVG-safe id from parts: lower case, other characters as '-' ('FedAvg, big' -> 'fedavg-big')."""
    return "-".join(re.sub(r"[^a-z0-9]+", "-", str(p).lower()).strip("-") for p in parts)


def save_figure(figure, png_path: str) -> list[str]:
    """Writes ``figure`` as ``png_path`` and as the same name with ``.svg``; returns both paths."""
    stem, _ = os.path.splitext(png_path)
    paths = [stem + ".png", stem + ".svg"]
    figure.tight_layout()
    for path in paths:
        figure.savefig(path)
    return paths


# ------------------------------------------------------------------------------- accuracy vs MACs


def plot_pareto(path: str, series: list[tuple], title: str,
                xlabel: str = "forward MACs per image (MMACs)", metric: metric_lib.Metric = metric_lib.ACCURACY):
    """Writes PNG and SVG of test accuracy (%) against forward MMACs, one line per series.

    Args:
      path: the PNG file (the SVG goes beside it).
      series: (legend label, rows) or (legend label, rows, gid) tuples; rows as `arch_rows` returns them
        (name, macs, test_accuracy), optionally with ``test_accuracy_low`` / ``test_accuracy_high`` (drawn
        as error bars: the spread over seeds); rows with a NaN accuracy are left out. The gid defaults to
        ``pareto-LABEL``.
      title: the plot title.
      xlabel: the x axis label.
      metric: what the y axis shows (accuracy unless told): the rows' ``test_<name>`` (and
        ``test_<name>_low`` / ``_high``), e.g. ``test_perplexity``, labelled "test perplexity".

    Returns:
      The matplotlib `Figure` (already saved).
    """
    figure = _new_figure(7, 4.5)
    axes = figure.add_subplot()
    named = set()  # an arch's name once, even when several series have a point at its MACs
    key, shown = f"test_{metric.name}", metric.shown
    for entry, marker in zip(series, "osD^v"):
        label, rows = entry[0], entry[1]
        gid = entry[2] if len(entry) > 2 else gid_of("pareto", label)
        points = sorted((r["macs"] / 1e6, shown(r[key]), r["name"],
                         shown(r.get(f"{key}_low", r[key])),
                         shown(r.get(f"{key}_high", r[key]))) for r in rows
                        if not math.isnan(r[key]))
        if not points:
            continue
        xs, ys, _, lows, highs = zip(*points)
        [line] = axes.plot(xs, ys, marker=marker, label=label, gid=gid)
        if any(low != y or high != y for y, low, high in zip(ys, lows, highs)):
            bars = axes.errorbar(xs, ys, yerr=[[y - low for y, low in zip(ys, lows)],
                                               [high - y for y, high in zip(ys, highs)]],
                                 fmt="none", ecolor=line.get_color(), capsize=3, alpha=0.7)
            for artist in bars.lines[2]:
                artist.set_gid(gid + "-spread")
        for x, y, name, _, _ in points:
            if (x, name) not in named:
                named.add((x, name))
                axes.annotate(name, (x, y), textcoords="offset points", xytext=(4, -12), fontsize=8)
    axes.margins(x=0.1, y=0.15)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(f"test {metric.name}{metric.unit}")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=7)
    save_figure(figure, path)
    return figure


# ------------------------------------------------------------------------------ accuracy vs round


class Curve(NamedTuple):
    """One line of accuracy (fractions; or another metric's values, see `Panel.scale`) by round, with an
    optional band (e.g. min-max over seeds)."""

    label: str
    gid: str
    rounds: list
    values: list
    low: Optional[list] = None
    high: Optional[list] = None
    color: Optional[str] = None
    linestyle: str = "-"


class Panel(NamedTuple):
    """One axes of `plot_curves`: a title, its y label, its curves and optionally a round to mark (the
    round a table quotes), drawn as a dotted vertical line with gid ``GID-marked``. The curves' values are
    drawn times ``scale`` (100: accuracy fractions as percent; 1: perplexity or loss as they are)."""

    title: str
    ylabel: str
    curves: list
    gid: str
    marked_round: Optional[int] = None
    scale: float = 100


def plot_curves(path: str, panels: list[Panel], title: str, columns: int = 2):
    """Writes PNG and SVG of accuracy (%) (or each panel's metric, `Panel.scale`) against round, one axes
    per panel, ``columns`` per row.

    A curve's line has its ``gid``; its band (drawn where ``low`` and ``high`` are given) has
    ``GID-band``. Returns the `Figure` (already saved).
    """
    MaxNLocator = _extras.require("matplotlib.ticker", "plots").MaxNLocator
    columns = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    figure = _new_figure(3.6 * columns + 0.8, 3.0 * rows + 0.7)
    for index, panel in enumerate(panels):
        axes = figure.add_subplot(rows, columns, index + 1, gid=panel.gid)
        for curve in panel.curves:
            ys = [panel.scale * v for v in curve.values]
            # Markers while they stay readable: a curve of one evaluation is a point, not an empty line.
            [line] = axes.plot(curve.rounds, ys, label=curve.label, gid=curve.gid, color=curve.color,
                               linestyle=curve.linestyle, linewidth=1.4,
                               marker="o" if len(ys) <= 60 else None, markersize=2.5)
            if curve.low is not None and curve.high is not None:
                axes.fill_between(curve.rounds, [panel.scale * v for v in curve.low],
                                  [panel.scale * v for v in curve.high],
                                  color=line.get_color(), alpha=0.2, linewidth=0, gid=curve.gid + "-band")
        if panel.marked_round is not None:
            axes.axvline(panel.marked_round, color="0.3", linestyle=":", linewidth=1,
                         label=f"round {panel.marked_round} (the table's)", gid=panel.gid + "-marked")
        axes.set_title(panel.title, fontsize=9)
        axes.set_xlabel("round")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
        axes.set_ylabel(panel.ylabel)
        axes.grid(alpha=0.3)
        if panel.curves:
            axes.legend(loc="best", fontsize=7)
    figure.suptitle(title, fontsize=10)
    save_figure(figure, path)
    return figure


# ------------------------------------------------------------------------ a search's Pareto front


class SearchPanel(NamedTuple):
    """One budget of a search: candidates and front as (cost, accuracy) points, tracked archs, limit.

    The y values are validation accuracies (fractions), or of the search's metric (``metric``: e.g.
    perplexity, lower is better)."""

    title: str
    xlabel: str  # the front's cost metric with its unit
    evaluated: list  # (x, accuracy) of every evaluated candidate
    front: list  # (x, accuracy) of the non-dominated ones, x ascending
    tracked: list  # (name, x, accuracy) of the run's tracked subnets
    limit: Optional[float]  # the budget on x
    gid: str
    metric: metric_lib.Metric = metric_lib.ACCURACY


def plot_search(path: str, panels: list[SearchPanel], title: str):
    """Writes PNG and SVG of one axes per budget: candidates faint, the front as a step line, tracked marked.

    gids per panel: ``GID-evaluated``, ``GID-front``, ``GID-tracked``, ``GID-limit``. The step line holds
    each front accuracy from its arch's cost to the next front arch's: the best accuracy any candidate
    reaches at that cost or less (the lowest, for a lower-is-better metric). Returns the `Figure` (already
    saved).
    """
    figure = _new_figure(5.2 * len(panels) + 0.6, 4.3)
    for index, panel in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1, gid=panel.gid)
        shown = panel.metric.shown
        if panel.evaluated:
            xs, ys = zip(*panel.evaluated)
            axes.scatter(xs, [shown(y) for y in ys], s=9, color="0.55", alpha=0.35, linewidths=0,
                         label=f"evaluated candidates ({len(panel.evaluated)})", gid=panel.gid + "-evaluated")
        if panel.front:
            xs, ys = zip(*panel.front)
            axes.step(xs, [shown(y) for y in ys], where="post", marker="o", markersize=4, color="C0",
                      label=f"non-dominated front ({len(panel.front)})", gid=panel.gid + "-front")
        if panel.tracked:
            names, xs, ys = zip(*panel.tracked)
            axes.scatter(xs, [shown(y) for y in ys], marker="*", s=90, color="C3", zorder=3,
                         label="tracked subnets", gid=panel.gid + "-tracked")
            for name, x, y in panel.tracked:
                axes.annotate(name, (x, shown(y)), textcoords="offset points", xytext=(5, 4), fontsize=7)
        if panel.limit is not None:
            axes.axvline(panel.limit, color="0.3", linestyle=":", linewidth=1, label="budget",
                         gid=panel.gid + "-limit")
        axes.set_title(panel.title, fontsize=9)
        axes.set_xlabel(panel.xlabel)
        axes.set_ylabel(f"validation {panel.metric.name}{panel.metric.unit}")
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize=7)
    figure.suptitle(title, fontsize=10)
    save_figure(figure, path)
    return figure
