"""Command line: the size of one arch (forward MACs of one image, params), one JSON object on stdout.

    python -m superfed_jax.reports.arch_size --config=configs/cifar10.py --arch='{"d":[0,0,0,0],"e":0.1}'

Without --config the paper's CIFAR space is used. The figures come from `superfed_jax.supernet.ofa_resnet.cost`.
The config needs only a `space` section (checked by `space.SearchSpace`); a missing config file, a bad
flag, a bad space or a bad arch is one `error:` message and exit status 2.
"""
import json

import jax
from absl import flags
from ml_collections import config_flags

from superfed_jax import _console
from superfed_jax import _cli
from superfed_jax import config as config_lib
from superfed_jax import validation
from superfed_jax.supernet.ofa_resnet import cost
from superfed_jax.supernet.ofa_resnet import space as space_lib


def main(argv) -> None:
    """Prints `cost.size_summary` of --arch in the space of --config; exit 2 with one line on bad input."""
    del argv
    config, arch_text = flags.FLAGS.config, flags.FLAGS.arch
    # Costs are host arithmetic: never initialise (and preallocate memory on) an accelerator for them.
    jax.config.update("jax_platforms", "cpu")
    try:
        space = config_lib.search_space(config) if config is not None else space_lib.SearchSpace()
        arch = space_lib.parse_arch(space, arch_text)
    except ValueError as error:
        # One message, no traceback: these are user errors and the message names the allowed values.
        _cli.fail("\n".join(" ".join(line.split()) for line in str(error).splitlines()))
    print(json.dumps(cost.size_summary(space, arch)))


def _define_flags() -> None:
    # Defined only when run as a program: flags defined at import would clash with the flags of any
    # other program that imports this module (e.g. its own --config).
    config_flags.DEFINE_config_file("config", None, "Config file with a `space` field; default: "
                                    "the paper's CIFAR space.", lock_config=True)
    flags.DEFINE_string("arch", None, 'Arch as JSON, e.g. \'{"d":[0,1,0,1],"e":0.14}\'.')
    flags.mark_flag_as_required("arch")


def console() -> None:
    """The `superfed-cost` command: the same as `python -m superfed_jax.reports.arch_size`."""
    _console.quiet_backend_probe()
    _cli.run(main, _define_flags, argv_checks=[validation.config_file_problem])


if __name__ == "__main__":
    console()
