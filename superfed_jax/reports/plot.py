"""Figures of the reports (matplotlib's object API on an Agg canvas: headless, no global state)."""
import math

from superfed_jax import _extras


def plot_pareto(path: str, series: list[tuple[str, list[dict]]], title: str):
    """Writes a PNG of test accuracy (%) against forward MMACs, one line per series.

    Args:
      path: the PNG file.
      series: (legend label, rows) pairs; rows as `arch_rows` returns them (name, macs, test_accuracy);
        rows with a NaN accuracy are left out.
      title: the plot title.

    Returns:
      The matplotlib `Figure` (already saved).
    """
    # Imported here: only reports need matplotlib (the optional 'plots' extra). The object API with an
    # explicit Agg canvas touches no global backend state (no pyplot), so it works headless and inside any
    # host program.
    FigureCanvasAgg = _extras.require("matplotlib.backends.backend_agg", "plots").FigureCanvasAgg
    Figure = _extras.require("matplotlib.figure", "plots").Figure

    figure = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    named = set()  # an arch's name once, even when several series have a point at its MACs
    for (label, rows), marker in zip(series, "osD^v"):
        points = sorted((r["macs"] / 1e6, 100 * r["test_accuracy"], r["name"]) for r in rows
                        if not math.isnan(r["test_accuracy"]))
        if not points:
            continue
        xs, ys, _ = zip(*points)
        axes.plot(xs, ys, marker=marker, label=label)
        for x, y, name in points:
            if (x, name) not in named:
                named.add((x, name))
                axes.annotate(name, (x, y), textcoords="offset points", xytext=(4, -12), fontsize=8)
    axes.margins(x=0.1, y=0.15)
    axes.set_xlabel("forward MACs per image (MMACs)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    return figure
