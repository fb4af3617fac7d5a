"""Entry point: `python launch.py [--config=configs/cifar10.py] [--workdir=DIR] [--config.a.b=value ...]`.

Without --config it runs the embedded default, configs/digits.py (scikit-learn's bundled digits, no
download). The logic lives in `superfed_jax.run.train`; this file only parses flags.
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_HERE = os.path.dirname(os.path.abspath(__file__))
config_flags.DEFINE_config_file(
    "config", os.path.join(_HERE, "configs", "digits.py"), "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", "", "Output directory (default: workdirs/<config name>).")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO; progress has its own line
    # Imported late so absl parses flags before JAX initialises.
    from superfed_jax import validation
    from superfed_jax.run import distributed
    from superfed_jax.run import preemption
    from superfed_jax.run import train

    config = flags.FLAGS.config
    name = os.path.splitext(os.path.basename(flags.FLAGS["config"].config_filename))[0]
    workdir = flags.FLAGS.workdir or os.path.join("workdirs", name)
    try:
        validation.check_config(config)
        distributed.initialize(config.distributed)  # multi-host only; before any backend is touched
        if distributed.is_writer():
            print(f"workdir: {workdir}", flush=True)
        train.train_and_evaluate(config, workdir)
    except preemption.Interrupted as interrupted:  # checkpointed: the same command resumes
        print(f"{interrupted}", file=sys.stderr)
        sys.exit(preemption.EXIT_INTERRUPTED)
    except (ValueError, FileNotFoundError) as error:  # bad config or data: a message, not a traceback
        if os.environ.get("SUPERFED_DEBUG"):
            raise
        print(f"error: {error}\n(set SUPERFED_DEBUG=1 for a traceback)", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
