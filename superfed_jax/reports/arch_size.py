"""Command line: the size of archs (forward MACs per image or token, params), one line per arch.

    python -m superfed_jax.reports.arch_size --config=configs/cifar10.py --arch='{"d":[0,0,0,0],"e":0.1}'
    superfed-cost --config=configs/shakespeare.py --arch=largest    # a tracked arch by name
    superfed-cost --config=configs/ptb.py                           # every tracked arch, one line each
    superfed-cost --config=configs/ptb.py --json                    # one JSON object per arch and line

The lines give MACs with SI prefixes (4 significant digits) and params with thousands separators; `--json`
prints the family's `cost_summary` of each arch exactly (every field, e.g. `gmacs`).

Without --config the default family on its default space is used (the OFA-ResNet on the paper's CIFAR
space). The figures are the family's `cost_summary` (`supernet.family.Family`); without --arch, the
family's default tracked archs are printed in order, each line with its "name". The config needs only a
`space` section (and `model.family` for another family than the default); a missing config file, a bad
flag, a bad space or a bad arch is one `error:` message and exit status 2.
"""
import json

import jax
from absl import flags
from ml_collections import config_flags

from superfed_jax import _console
from superfed_jax import _cli
from superfed_jax import _readable
from superfed_jax import config as config_lib
from superfed_jax import validation
from superfed_jax.supernet import family as family_lib


def _parse_arch(family: family_lib.Family, text: str):
    """One arch from its JSON text or a tracked name; a ValueError says what the family's archs may be
    (`arch_help`)."""
    if text in family.default_tracked():
        return family.default_tracked()[text]
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        names = ", ".join(family.default_tracked())
        raise ValueError(f"arch {text!r} is not a tracked name ({names}) and not valid JSON ({error}); "
                         f"{family.arch_help()}") from None
    return family.arch_from_json(spec)


def main(argv) -> None:
    """Prints the family's `cost_summary` of --arch (or of each tracked arch) in the space of --config;
    exit 2 with one line on bad input."""
    del argv
    config, arch_text = flags.FLAGS.config, flags.FLAGS.arch
    # Costs are host arithmetic: never initialise (and preallocate memory on) an accelerator for them.
    jax.config.update("jax_platforms", "cpu")
    try:
        family = (config_lib.make_family(config) if config is not None
                  else family_lib.family_class(family_lib.DEFAULT_FAMILY).from_config({}))
        archs = ({None: _parse_arch(family, arch_text)} if arch_text is not None
                 else family.default_tracked())
    except ValueError as error:
        # One message, no traceback: these are user errors and the message names the allowed values.
        _cli.fail("\n".join(" ".join(line.split()) for line in str(error).splitlines()))
    summaries = [family.cost_summary(arch) if name is None else {"name": name, **family.cost_summary(arch)}
                 for name, arch in archs.items()]
    if flags.FLAGS.json:
        for summary in summaries:
            print(_readable.json_line(summary))
    else:
        print(summary_text(summaries, family.cost_unit))


def summary_text(summaries: list[dict], cost_unit: str = "image") -> str:
    """The cost command's summary: a heading naming the cost unit, then one line per arch with its name
    ('arch' for one given by --arch), forward MACs (SI prefixes), params and the arch's JSON."""
    names = [summary.get("name", "arch") for summary in summaries]
    macs = [_readable.si(summary["macs"], "MACs") for summary in summaries]
    params = [_readable.count(summary["params"]) for summary in summaries]
    widths = [max(len(text) for text in column) for column in (names, macs, params)]
    lines = [f"forward MACs per {cost_unit} and params of each arch:"]
    lines += [f"  {name:<{widths[0]}}  {mac:>{widths[1]}}  {param:>{widths[2]}} params  "
              f"{json.dumps(summary['arch'], separators=(',', ':'))}"
              for name, mac, param, summary in zip(names, macs, params, summaries)]
    return "\n".join(lines)


def _define_flags() -> None:
    # Defined only when run as a program: flags defined at import would clash with the flags of any
    # other program that imports this module (e.g. its own --config).
    config_flags.DEFINE_config_file("config", None, "Config file with a `space` field; default: "
                                    "the default family's space (the paper's CIFAR space).", lock_config=True)
    flags.DEFINE_string("arch", None, 'Arch as JSON, e.g. \'{"d":[0,1,0,1],"e":0.14}\', or a tracked '
                        "name (smallest, ..., largest); without it, every tracked arch.")
    _cli.define_json_flag()


ABOUT = ("superfed-cost: the size of archs in the space of a config: forward MACs per image (or token) and "
         "params, one line per arch (--json: one JSON object per arch, one a line, every figure exact).\n\n"
         "usage: superfed-cost [--config=FILE[:VARIANT]] [--arch=JSON|NAME] [--json]")


def console() -> None:
    """The `superfed-cost` command: the same as `python -m superfed_jax.reports.arch_size`."""
    _console.quiet_backend_probe()
    _cli.run(main, _define_flags, argv_checks=[validation.config_file_problem], config_flag=True, about=ABOUT)


if __name__ == "__main__":
    console()
