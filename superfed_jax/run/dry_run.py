"""`dry_run=True`: a run's client and subnet assignment for every round and its cost report; no data,
no training (the assignment depends only on the seed, the round and the tracking counters)."""
import os

import ml_collections

from superfed_jax import config as config_lib
from superfed_jax import validation
from superfed_jax.federated import assignment
from superfed_jax.reports import run_cost
from superfed_jax.run import build
from superfed_jax.run import workdir as workdir_lib


def run_dry(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Writes `WORKDIR/cost.json` from the run's assignment sequence, prints its summary, returns it.

    Refuses a workdir that holds a training run (its cost.json is the trained run's own).
    """
    validation.check_config(config, check_files=False)  # no data is read
    workdir_lib.check_dry_run_target(workdir)
    family = config_lib.make_family(config)
    sequence = assignment.assignment_sequence(family, build.round_settings(config, family), config.seed,
                                              config.fl.rounds)
    os.makedirs(workdir, exist_ok=True)
    report = run_cost.write_cost_report(config, family, sequence, workdir)
    print(run_cost.cost_summary(report, family.cost_unit), flush=True)
    return report
