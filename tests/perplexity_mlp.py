"""A test family: `examples/elastic_mlp.py`'s MLP that also reports perplexity, as a language model does.

Its perplexity is exp(loss) of an image classifier, which is enough to drive everything that follows the
headline metric (`eval.metric` 'auto' resolves to perplexity for it). Named on the command line as
`--config.model.family=tests.perplexity_mlp:PerplexityMLP` (from the repository root), in process as the
same path.
"""
import dataclasses

from examples.elastic_mlp import ElasticMLP


@dataclasses.dataclass(frozen=True)
class PerplexityMLP(ElasticMLP):
    metrics = ("accuracy", "loss", "perplexity")
