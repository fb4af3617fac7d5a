"""Figures of the reports (matplotlib's object API on an Agg canvas: headless, no global state).

Every figure is written twice, as ``NAME.png`` and ``NAME.svg`` (`save_figure`): the PNG for report.md, the
SVG for a paper. Every artist that carries data has a ``gid`` (``pareto-SERIES``, ``curve-PANEL-SERIES``,
``search-PANEL-front`` ...), which the SVG keeps as the ``id`` of its group, so a figure can be checked or
restyled from the SVG alone.

* `plot_pareto`: test accuracy against forward MACs, one line per series, optional error bars (seeds).
* `plot_curves`: accuracy against round, one panel per (split or arch), a line per series with a band.
* `plot_search`: a post-training search's candidates, their non-dominated front as a step line, the run's
  tracked subnets and the budget, one panel per budget.
* `plot_loss`: the mean training loss of every round (rounds.jsonl), one line.

Every writer takes a `Style` (`style_named`): ``default``, the figures as they have always been (a title
on each, sizes for a screen, each panel its own y range), or ``paper``, for a figure placed in a paper
whose caption says what the title said: no title, column widths (`PAPER_SINGLE` = 3.3 in for one axes,
`PAPER_DOUBLE` = 6.9 in for several: a two-column paper's column and page widths, e.g. IEEE's 3.5 in
and 7.16 in less a margin), 8 pt text (7 pt ticks and legends), 300 dpi PNGs, one y range and one legend
shared by panels that compare the same metric. ``Style.width`` / ``height`` (inches) override the size.
In both styles the round axes are ticked at the rounds where evaluations happened (`round_ticks`).
"""
import contextlib
import math
import os
import re
from typing import NamedTuple, Optional

from superfed_jax import _extras
from superfed_jax.federated import metric as metric_lib

__all__ = ["Style", "STYLES", "DEFAULT", "PAPER", "PAPER_SINGLE", "PAPER_DOUBLE", "style_named", "round_ticks",
           "Curve", "Panel", "SearchPanel", "gid_of", "save_figure", "plot_pareto", "plot_curves",
           "plot_search", "plot_loss"]

PAPER_SINGLE = 3.3  # inches: one column of a two-column paper (IEEE 3.5 in, ACM 3.33 in), less a margin
PAPER_DOUBLE = 6.9  # inches: both columns (IEEE 7.16 in, ACM 7.0 in), less a margin


class Style(NamedTuple):
    """How the figures look: titles, sizes, fonts and whether panels of one metric share their y axis."""

    name: str
    titles: bool  # the figure's suptitle and a single axes' title (a paper's caption replaces them)
    share_y: bool  # panels of the same metric on one y range (and one legend, one y label per row)
    dpi: int  # of the PNG (the SVG is vector)
    rc: dict  # matplotlib settings while a figure is drawn and saved ({}: matplotlib's own)
    title_size: float  # points: panel titles
    note_size: float  # points: legends and point annotations
    max_round_ticks: int  # at most this many round ticks per axes (`round_ticks`)
    layout_pad: float  # tight_layout's padding, in font sizes (a paper has no margin to waste)
    width: Optional[float] = None  # inches, overriding the writer's width
    height: Optional[float] = None  # inches, overriding the writer's height

    def size(self, width: float, height: float) -> tuple[float, float]:
        """(width, height) in inches: the writer's, unless the style overrides them. A width given alone
        scales the writer's height with it, so the figure keeps its shape."""
        if self.width is not None and self.height is None:
            return self.width, height * self.width / width
        return self.width or width, self.height or height


DEFAULT = Style("default", titles=True, share_y=False, dpi=120, rc={}, title_size=9, note_size=7,
                max_round_ticks=10,
                layout_pad=1.08)
PAPER = Style("paper", titles=False, share_y=True, dpi=300, title_size=8, note_size=6.5, max_round_ticks=6,
              layout_pad=0.3,
              rc={"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7,
                  "ytick.labelsize": 7, "legend.fontsize": 6.5, "axes.linewidth": 0.6,
                  "grid.linewidth": 0.5, "lines.linewidth": 1.0, "lines.markersize": 3,
                  "xtick.major.width": 0.6, "ytick.major.width": 0.6, "savefig.pad_inches": 0.02})
STYLES = {style.name: style for style in (DEFAULT, PAPER)}


def style_named(name: str, width: Optional[float] = None, height: Optional[float] = None) -> Style:
    """The style called ``name``, sized ``width`` x ``height`` inches where given.

    Raises:
      ValueError: an unknown name, or a size that is not a positive number (one line, naming the choices).
    """
    if name not in STYLES:
        raise ValueError(f"unknown figure style {name!r}; the styles are {', '.join(sorted(STYLES))}")
    for flag, value in (("width", width), ("height", height)):
        if value is not None and not (math.isfinite(value) and 0 < value <= 100):
            raise ValueError(f"--{flag}={value:g}: a figure's {flag} is a positive number of inches (at most 100)")
    return STYLES[name]._replace(width=width, height=height)


def round_ticks(rounds, most: int) -> list[int]:
    """The rounds to tick: the evaluation rounds, every k-th of them when there are more than ``most``.

    Thinned from the last one back, so the final evaluation, the one a run ends on, is always ticked.
    """
    rounds = sorted(set(int(r) for r in rounds))
    step = max(1, math.ceil(len(rounds) / max(1, most)))
    return rounds[::-1][::step][::-1]


def _set_round_ticks(axes, rounds, style: Style) -> None:
    """Ticks the x axis of ``axes`` at `round_ticks` of ``rounds`` (whole rounds only when there are none)."""
    ticks = round_ticks(rounds, style.max_round_ticks)
    if ticks:
        axes.set_xticks(ticks)
    else:
        MaxNLocator = _extras.require("matplotlib.ticker", "plots").MaxNLocator
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers


@contextlib.contextmanager
def _styled(style: Style):
    """Applies the style's matplotlib settings while a figure is built and saved (text sizes are read
    when an artist is made, tick labels when it is drawn, so both must happen inside)."""
    matplotlib = _extras.require("matplotlib", "plots")
    with matplotlib.rc_context(style.rc):
        yield


def _new_figure(width: float, height: float, style: Style = DEFAULT):
    """A Figure on its own Agg canvas; ImportError naming the 'plots' extra without matplotlib.

    ``width`` x ``height`` are the writer's inches, which the style may override (`Style.size`)."""
    # Imported here: only reports need matplotlib (the optional 'plots' extra). The object API with an
    # explicit Agg canvas touches no global backend state (no pyplot), so it works headless and inside any
    # host program.
    FigureCanvasAgg = _extras.require("matplotlib.backends.backend_agg", "plots").FigureCanvasAgg
    Figure = _extras.require("matplotlib.figure", "plots").Figure
    figure = Figure(figsize=style.size(width, height), dpi=style.dpi)
    FigureCanvasAgg(figure)
    return figure


def gid_of(*parts) -> str:
    """An SVG-safe id from parts: lower case, other characters as '-' ('FedAvg, big' -> 'fedavg-big')."""
    return "-".join(re.sub(r"[^a-z0-9]+", "-", str(p).lower()).strip("-") for p in parts)


def save_figure(figure, png_path: str, style: Style = DEFAULT) -> list[str]:
    """Writes ``figure`` as ``png_path`` and as the same name with ``.svg``; returns both paths.

    Both files are saved from the one Figure, so they show the same data (which the writers take from the
    lists they also write to CSV). The PNG has the figure's dpi (the style's)."""
    stem, _ = os.path.splitext(png_path)
    paths = [stem + ".png", stem + ".svg"]
    figure.tight_layout(pad=style.layout_pad)
    for path in paths:
        figure.savefig(path, dpi=figure.dpi)
    return paths


# ------------------------------------------------------------------------------- accuracy vs MACs


def plot_pareto(path: str, series: list[tuple], title: str,
                xlabel: str = "forward MACs per image (MMACs)", metric: metric_lib.Metric = metric_lib.ACCURACY,
                style: Style = DEFAULT):
    """Writes PNG and SVG of test accuracy (%) against forward MMACs, one line per series.

    Args:
      path: the PNG file (the SVG goes beside it).
      series: (legend label, rows) or (legend label, rows, gid) tuples; rows as `arch_rows` returns them
        (name, macs, test_accuracy), optionally with ``test_accuracy_low`` / ``test_accuracy_high`` (drawn
        as error bars: the spread over seeds); rows with a NaN accuracy are left out. The gid defaults to
        ``pareto-LABEL``.
      title: the plot title (not drawn in a style without titles).
      xlabel: the x axis label.
      metric: what the y axis shows (accuracy unless told): the rows' ``test_<name>`` (and
        ``test_<name>_low`` / ``_high``), e.g. ``test_perplexity``, labelled "test perplexity".
      style: how it looks (`Style`); paper: one column wide, no title.

    Returns:
      The matplotlib `Figure` (already saved).
    """
    with _styled(style):
        size = (7, 4.5) if style.titles else (PAPER_SINGLE, 2.5)
        figure = _new_figure(*size, style)
        axes = figure.add_subplot()
        _pareto_series(axes, series, metric, style)
        axes.margins(x=0.1, y=0.15)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(f"test {metric.name}{metric.unit}")
        if style.titles:
            axes.set_title(title, fontsize=style.title_size)
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize=style.note_size)
        save_figure(figure, path, style)
    return figure


def _pareto_series(axes, series: list[tuple], metric: metric_lib.Metric, style: Style) -> None:
    """Draws `plot_pareto`'s series on ``axes``: a line each, error bars where they spread, arch names."""
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
                axes.annotate(name, (x, y), textcoords="offset points", xytext=(4, -12 if style.titles else -9),
                              fontsize=style.note_size + 1)


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


def _grid_size(columns: int, rows: int, style: Style) -> tuple[float, float]:
    """The writer's inches for ``rows`` x ``columns`` panels: a screen's 3.6 x 3.0 in per panel, or for a
    paper the column width (one panel) or page width (several) with panels 0.75 as high as wide."""
    if style.titles:
        return 3.6 * columns + 0.8, 3.0 * rows + 0.7
    width = PAPER_SINGLE if columns == 1 else PAPER_DOUBLE
    return width, rows * 0.75 * width / columns + 0.3


def _panel_axes(figure, rows: int, columns: int, gids: list[str], style: Style) -> list:
    """One axes per gid, row by row; with `Style.share_y` all on the first one's y axis (the panels of
    one figure show one metric: a split, or an arch, each)."""
    axes = []
    for index, gid in enumerate(gids):
        share = axes[0] if style.share_y and axes else None
        axes.append(figure.add_subplot(rows, columns, index + 1, gid=gid, sharey=share))
    return axes


def plot_curves(path: str, panels: list[Panel], title: str, columns: int = 2, style: Style = DEFAULT,
                shared_ylabel: Optional[str] = None):
    """Writes PNG and SVG of accuracy (%) (or each panel's metric, `Panel.scale`) against round, one axes
    per panel, ``columns`` per row, rounds ticked at the curves' evaluations (`round_ticks`).

    A curve's line has its ``gid``; its band (drawn where ``low`` and ``high`` are given) has
    ``GID-band``. With `Style.share_y` every panel has the same y range, the y label only in the first
    column (``shared_ylabel`` where a row's panels have different labels, e.g. 'accuracy (%)' for a row of
    'validation accuracy (%)' and 'test accuracy (%)'), the x label only in the bottom row and the legend
    only in the first panel (the panels show the same series). Returns the `Figure` (already saved).
    """
    columns = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    with _styled(style):
        figure = _new_figure(*_grid_size(columns, rows, style), style)
        all_axes = _panel_axes(figure, rows, columns, [p.gid for p in panels], style)
        for index, (axes, panel) in enumerate(zip(all_axes, panels)):
            _draw_panel(axes, panel, style)
            if style.share_y:
                _label_shared(axes, index, columns, panels, shared_ylabel)
            else:
                axes.set_ylabel(panel.ylabel)
                axes.set_xlabel("round")
            if panel.curves and (not style.share_y or index == 0):
                axes.legend(loc="best", fontsize=style.note_size)
        if style.titles:
            figure.suptitle(title, fontsize=10)
        save_figure(figure, path, style)
    return figure


def _label_shared(axes, index: int, columns: int, panels: list[Panel], shared_ylabel: Optional[str]) -> None:
    """Labels panel ``index`` of a grid on one y axis: the y label in the first column only (it reads for
    the whole row; ``shared_ylabel`` where the row's panels have different labels), 'round' in the bottom
    row only (it reads for the column)."""
    if index % columns == 0:
        row = {p.ylabel for p in panels[index:index + columns]}
        axes.set_ylabel(panels[index].ylabel if len(row) == 1 else shared_ylabel or panels[index].ylabel)
    else:
        axes.tick_params(labelleft=False)
    if index + columns >= len(panels):
        axes.set_xlabel("round")


def _draw_panel(axes, panel: Panel, style: Style) -> None:
    """One panel of `plot_curves`: its curves and bands, the marked round, title, round ticks and grid."""
    for curve in panel.curves:
        ys = [panel.scale * v for v in curve.values]
        # Markers while they stay readable: a curve of one evaluation is a point, not an empty line.
        [line] = axes.plot(curve.rounds, ys, label=curve.label, gid=curve.gid, color=curve.color,
                           linestyle=curve.linestyle, linewidth=1.4 if style.titles else 1.0,
                           marker="o" if len(ys) <= 60 else None, markersize=2.5 if style.titles else 2)
        if curve.low is not None and curve.high is not None:
            axes.fill_between(curve.rounds, [panel.scale * v for v in curve.low],
                              [panel.scale * v for v in curve.high],
                              color=line.get_color(), alpha=0.2, linewidth=0, gid=curve.gid + "-band")
    if panel.marked_round is not None:
        axes.axvline(panel.marked_round, color="0.3", linestyle=":", linewidth=1,
                     label=f"round {panel.marked_round} (the table's)", gid=panel.gid + "-marked")
    axes.set_title(panel.title, fontsize=style.title_size)
    _set_round_ticks(axes, [r for curve in panel.curves for r in curve.rounds], style)
    axes.grid(alpha=0.3)


# ------------------------------------------------------------------------------ training loss by round


def plot_loss(path: str, rounds: list, losses: list, title: str, eval_rounds=(), style: Style = DEFAULT):
    """Writes PNG and SVG of the mean training loss of every round, one line (gid ``train-loss``).

    ``rounds`` and ``losses`` are rounds.jsonl's ``round`` and ``train_loss`` (a NaN: a round in which
    every client failed, left as a gap). The x axis is ticked at ``eval_rounds`` (the evaluations, so the
    figure lines up with the accuracy curves), or at whole rounds without them. Returns the `Figure`.
    """
    with _styled(style):
        figure = _new_figure(*((6, 3.2) if style.titles else (PAPER_SINGLE, 2.0)), style)
        axes = figure.add_subplot(gid="panel-train-loss")
        axes.plot(rounds, losses, color="C0", gid="train-loss", linewidth=1.2 if style.titles else 1.0,
                  marker="o" if len(rounds) <= 60 else None, markersize=2.5 if style.titles else 2)
        axes.set_xlabel("round")
        axes.set_ylabel("training loss")
        _set_round_ticks(axes, eval_rounds, style)
        axes.grid(alpha=0.3)
        if style.titles:
            axes.set_title(title, fontsize=style.title_size)
        save_figure(figure, path, style)
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


def plot_search(path: str, panels: list[SearchPanel], title: str, style: Style = DEFAULT):
    """Writes PNG and SVG of one axes per budget: candidates faint, the front as a step line, tracked marked.

    gids per panel: ``GID-evaluated``, ``GID-front``, ``GID-tracked``, ``GID-limit``. The step line holds
    each front accuracy from its arch's cost to the next front arch's: the best accuracy any candidate
    reaches at that cost or less (the lowest, for a lower-is-better metric). With `Style.share_y` the
    budgets share the y axis (all are the search's validation metric). Returns the `Figure` (already
    saved).
    """
    with _styled(style):
        size = ((5.2 * len(panels) + 0.6, 4.3) if style.titles
                else _grid_size(len(panels), 1, style))
        figure = _new_figure(*size, style)
        all_axes = _panel_axes(figure, 1, len(panels), [p.gid for p in panels], style)
        for index, (axes, panel) in enumerate(zip(all_axes, panels)):
            _draw_search_panel(axes, panel, style)
            if not style.share_y or index == 0:
                axes.set_ylabel(f"validation {panel.metric.name}{panel.metric.unit}")
                axes.legend(loc="best", fontsize=style.note_size)
            else:
                axes.tick_params(labelleft=False)
        if style.titles:
            figure.suptitle(title, fontsize=10)
        save_figure(figure, path, style)
    return figure


def _draw_search_panel(axes, panel: SearchPanel, style: Style) -> None:
    """One budget of `plot_search`: candidates, front, tracked subnets, the budget line, title and grid."""
    shown = panel.metric.shown
    if panel.evaluated:
        xs, ys = zip(*panel.evaluated)
        axes.scatter(xs, [shown(y) for y in ys], s=9 if style.titles else 6, color="0.55", alpha=0.35,
                     linewidths=0, label=f"evaluated candidates ({len(panel.evaluated)})",
                     gid=panel.gid + "-evaluated")
    if panel.front:
        xs, ys = zip(*panel.front)
        axes.step(xs, [shown(y) for y in ys], where="post", marker="o", markersize=4 if style.titles else 2.5,
                  color="C0", label=f"non-dominated front ({len(panel.front)})", gid=panel.gid + "-front")
    if panel.tracked:
        names, xs, ys = zip(*panel.tracked)
        axes.scatter(xs, [shown(y) for y in ys], marker="*", s=90 if style.titles else 40, color="C3", zorder=3,
                     label="tracked subnets", gid=panel.gid + "-tracked")
        for name, x, y in panel.tracked:
            axes.annotate(name, (x, shown(y)), textcoords="offset points", xytext=(5, 4),
                          fontsize=style.note_size)
    if panel.limit is not None:
        axes.axvline(panel.limit, color="0.3", linestyle=":", linewidth=1, label="budget",
                     gid=panel.gid + "-limit")
    axes.set_title(panel.title, fontsize=style.title_size)
    axes.set_xlabel(panel.xlabel)
    axes.grid(alpha=0.3)
