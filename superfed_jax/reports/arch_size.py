"""Command line: the size of one arch (forward MACs of one image, params), one JSON object on stdout.

    python -m superfed_jax.reports.arch_size --config=configs/cifar10.py --arch='{"d":[0,0,0,0],"e":0.1}'

Without --config the default family on its default space is used (the OFA-ResNet on the paper's CIFAR
space). The figures are the family's `cost_summary` (`supernet.family.Family`). The config needs only a
`space` section (and `model.family` for another family than the default); a missing config file, a bad
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
from superfed_jax.supernet import family as family_lib


def _parse_arch(family: family_lib.Family, text: str):
    """One arch from its JSON text; a ValueError says what the family's archs may be (`arch_help`)."""
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"arch {text!r} is not valid JSON ({error}); {family.arch_help()}") from None
    return family.arch_from_json(spec)


def main(argv) -> None:
    """Prints the family's `cost_summary` of --arch in the space of --config; exit 2 with one line on bad
    input."""
    del argv
    config, arch_text = flags.FLAGS.config, flags.FLAGS.arch
    # Costs are host arithmetic: never initialise (and preallocate memory on) an accelerator for them.
    jax.config.update("jax_platforms", "cpu")
    try:
        family = (config_lib.make_family(config) if config is not None
                  else family_lib.family_class(family_lib.DEFAULT_FAMILY).from_config({}))
        arch = _parse_arch(family, arch_text)
    except ValueError as error:
        # One message, no traceback: these are user errors and the message names the allowed values.
        _cli.fail("\n".join(" ".join(line.split()) for line in str(error).splitlines()))
    print(json.dumps(family.cost_summary(arch)))


def _define_flags() -> None:
    # Defined only when run as a program: flags defined at import would clash with the flags of any
    # other program that imports this module (e.g. its own --config).
    config_flags.DEFINE_config_file("config", None, "Config file with a `space` field; default: "
                                    "the default family's space (the paper's CIFAR space).", lock_config=True)
    flags.DEFINE_string("arch", None, 'Arch as JSON, e.g. \'{"d":[0,1,0,1],"e":0.14}\'.')
    flags.mark_flag_as_required("arch")


def console() -> None:
    """The `superfed-cost` command: the same as `python -m superfed_jax.reports.arch_size`."""
    _console.quiet_backend_probe()
    _cli.run(main, _define_flags, argv_checks=[validation.config_file_problem], config_flag=True)


if __name__ == "__main__":
    console()
