"""The headline metric of a run: what chooses the best round, ranks search candidates and decides claims.

Evaluation (`federated.evaluation.evaluate_tracked`) records every metric the family reports (`Family.metrics`:
'accuracy' and 'loss', and 'perplexity' for a language model). One of them is the *headline* metric, set by
the config field `eval.metric`: 'auto' (the default) is perplexity for a family whose metrics list it, else
accuracy. Everything downstream (the best round of `reports.run_record.select_best`, the reports' tables,
curves and plots, the comparison with FedAvg and its verdicts, the post-training search's fitness and Pareto
fronts, the progress line) follows it in its direction:

* accuracy: higher is better, shown as a percent;
* loss (mean cross-entropy) and perplexity (exp of it): lower is better, shown as plain numbers.

This module is the one definition of those metrics and their direction. Pure Python, no JAX.
"""
import math
from typing import Iterable, NamedTuple, Optional

__all__ = ["Metric", "ACCURACY", "LOSS", "PERPLEXITY", "METRICS", "METRIC_CHOICES", "AUTO",
           "headline_metric", "config_metric", "metric_named"]

AUTO = "auto"


class Metric(NamedTuple):
    """One evaluation metric and how it is compared and shown.

    Attributes:
      name: the metric's name in metrics.jsonl keys (`<arch>/<split>_<name>`).
      higher_is_better: its direction.
      percent: shown as a percent (values are fractions), else as the plain number.
      short: the word in table columns ('val acc', 'test perplexity'): 'acc' for accuracy, else the name.
      plural: the capitalised plural for report sentences ('Accuracies').
      decimals: digits after the point where shown (of the percent for accuracy).
    """

    name: str
    higher_is_better: bool
    percent: bool
    short: str
    plural: str
    decimals: int

    # ------------------------------------------------------------------------------ records and order

    def key(self, arch: str, split: str) -> str:
        """The metrics.jsonl key of arch `arch` on `split` ('val', 'test'), e.g. 'tiny/val_perplexity'."""
        return f"{arch}/{split}_{self.name}"

    def score(self, value: float) -> float:
        """`value` turned so that higher is better (the value itself, or its negative); its own inverse."""
        return value if self.higher_is_better else -value

    def is_better(self, value: float, other: float) -> bool:
        """Whether `value` is strictly better than `other` in the metric's direction."""
        return self.score(value) > self.score(other)

    def from_loss(self, loss: float) -> float:
        """The metric from the mean cross-entropy (loss itself, or exp of it); ValueError for accuracy."""
        if self.name == "loss":
            return float(loss)
        if self.name == "perplexity":
            try:
                return math.exp(loss)
            except OverflowError:
                return math.inf
        raise ValueError(f"{self.name} does not follow from the loss")

    # ------------------------------------------------------------------------------------ display

    def shown(self, value: float) -> float:
        """The number shown for `value`: percent of a fraction for accuracy, else the value."""
        return 100 * value if self.percent else value

    def text(self, value: Optional[float]) -> str:
        """`value` as the reports' tables show it ('n/a' for None/NaN), e.g. '80.00' or '12.35'."""
        if value is None or math.isnan(value):
            return "n/a"
        return f"{self.shown(value):.{self.decimals}f}"

    def difference_text(self, value: Optional[float]) -> str:
        """A difference of two values as shown, with its sign ('n/a' for None/NaN), e.g. '+1.25'."""
        if value is None or math.isnan(value):
            return "n/a"
        return f"{self.shown(value):+.{self.decimals}f}"

    @property
    def unit(self) -> str:
        """' (%)' after a column header of accuracy, '' otherwise."""
        return " (%)" if self.percent else ""

    @property
    def difference_unit(self) -> str:
        """The unit of a difference: 'points' of percent for accuracy, else the metric's name."""
        return "points" if self.percent else self.name

    def csv_column(self, prefix: str) -> str:
        """A CSV column of this metric: 'PREFIX_accuracy_percent' for accuracy, else 'PREFIX_<name>'."""
        return f"{prefix}_{self.name}_percent" if self.percent else f"{prefix}_{self.name}"

    @property
    def best_word(self) -> str:
        """'best' for a higher-is-better metric, 'lowest' otherwise (as in 'the lowest mean perplexity')."""
        return "best" if self.higher_is_better else "lowest"


ACCURACY = Metric("accuracy", True, True, "acc", "Accuracies", 2)
LOSS = Metric("loss", False, False, "loss", "Losses", 4)
PERPLEXITY = Metric("perplexity", False, False, "perplexity", "Perplexities", 2)
METRICS = {m.name: m for m in (ACCURACY, LOSS, PERPLEXITY)}
METRIC_CHOICES = (AUTO,) + tuple(METRICS)  # the values of the config field eval.metric


def metric_named(name: str) -> Metric:
    """The `Metric` of a name; ValueError naming the allowed ones."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; allowed: {', '.join(METRICS)}")
    return METRICS[name]


def headline_metric(config_value: Optional[str], family_metrics: Iterable[str]) -> Metric:
    """The metric `eval.metric` = `config_value` means for a family reporting `family_metrics`.

    'auto' (or None: a config written before the field existed) is perplexity when the family reports it
    (a language model), else accuracy. ValueError when the metric is unknown or the family does not report
    it, naming the field, the value and what is allowed.
    """
    family_metrics = tuple(family_metrics)
    if config_value is None or config_value == AUTO:
        return PERPLEXITY if "perplexity" in family_metrics else ACCURACY
    allowed = ", ".join(repr(m) for m in (AUTO,) + tuple(m for m in METRICS if m in family_metrics))
    if config_value not in METRICS or config_value not in family_metrics:
        why = "unknown" if config_value not in METRICS else "not reported by the model family"
        raise ValueError(f"eval.metric={config_value!r}: {why}; allowed for this family: {allowed}")
    return METRICS[config_value]


def config_metric(config, family_metrics: Iterable[str]) -> Metric:
    """The headline metric of a run's config (a dict such as config.json, or a ConfigDict); a config
    without `eval.metric` (an old run) reads as 'auto'."""
    section = config.get("eval") if hasattr(config, "get") else None
    value = section.get("metric") if hasattr(section, "get") else None
    return headline_metric(value, family_metrics)
