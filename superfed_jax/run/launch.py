"""The training command: `superfed-train` once installed, `python launch.py` in the repository.

    superfed-train [--config=PATH[:fedavg=ARCH]] [--workdir=DIR] [--config.SECTION.FIELD=VALUE ...]
                   [--config.model.family=NAME --config.space.FIELD=VALUE ...]

Without --config it runs the package's own `configs/digits.py` (scikit-learn's bundled digits, no
download); `--config=NAME[:VARIANT]` (or `configs/NAME.py` from outside the repository) is the packaged
config of that name (`_cli.resolve_config`). The default --workdir names the config, its variant and an
.npz file's name (`workdirs/digits_smoke`, `workdirs/npz_my_data`: `workdir.default_workdir`). The
fields and their documentation are in `superfed_jax/config_schema.py`. The work is done by
`superfed_jax.run.train`; this module parses the command line.

`--help` (`-h`) prints the command's own flags (`help_text`) and exits 0; `--config_help[=SECTION,...]`
prints the fields of the config the command line would train (its family's `space` fields included;
`superfed_jax.config_reference`) and exits 0, before any config is checked or anything trains.

Every mistake, on the command line, in the config or in the data, ends the command with one
`error: ...` message and exit status 2, never a traceback (set SUPERFED_DEBUG=1 for one where there is
one): a misspelt field (`fl.round: unknown field (did you mean fl.rounds?)`), a value that is not of the
field's kind (`fl.rounds='abc': must be an integer >= 1`), an unknown flag.

A `--config.X` given more than once: the last one wins, for every field. (ml_collections would join the
values of a repeated tuple field into one tuple; here a tuple field given twice simply has its last value,
and a tuple is always given as one value.) So a script may append overrides to a fixed list of arguments.

`--config.model.family=NAME` trains another supernet family (a registered name or 'package.module:Class'):
the config file's space is replaced by that family's default space, then `--config.space.X` overrides,
checked against that family's fields, apply to it.

Compiled programs are kept in JAX's persistent compilation cache (`--config.compilation_cache`: by
default under the user's cache directory; `superfed_jax/_compilation_cache.py`), so a second run of the
same programs on this machine loads them instead of compiling.
"""
import functools
import os
import re
import sys
from typing import Optional, Sequence

# Light (the standard library only; the package imports nothing on its own): they go first so that the
# handler below is in place before absl, ml_collections and JAX are imported.
from superfed_jax.run import kill_points
from superfed_jax.run import preemption


def _is_the_training_command() -> bool:
    """Whether this process was started as the training command (not a program importing this module)."""
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    return __name__ == "__main__" or program in ("superfed-train", "launch.py")


if _is_the_training_command():
    # Seconds of imports, flag parsing and config loading come before the run's own handlers: an
    # interrupt there is one line and exit 75, not a KeyboardInterrupt traceback.
    preemption.exit_on_termination_while_starting()
    kill_points.reached("start")

from absl import app  # noqa: E402 - after the handler
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402
from ml_collections.config_flags import tuple_parser  # noqa: E402

from superfed_jax import _compilation_cache  # noqa: E402
from superfed_jax import _console  # noqa: E402
from superfed_jax import _cli  # noqa: E402

__all__ = ["DEFAULT_CONFIG", "EXIT_USAGE", "last_override_wins", "override_problems", "main", "console"]

# The package's own default config, found next to the installed modules (superfed_jax/configs/).
DEFAULT_CONFIG = os.path.join(_cli.PACKAGED_CONFIGS, "digits.py")
EXIT_USAGE = _cli.EXIT_USAGE  # a bad config, flag or data file
# --config.a.b=V, --config.a.b V, --config.a.b (True), --noconfig.a.b (False); one dash works too.
_OVERRIDE = re.compile(r"^--?(no)?config\.([^=]*)(?:=(.*))?$", re.DOTALL)
# The parsers ml_collections uses for fields of these kinds, so a value passing here parses there too.
_PARSERS = {"int": flags.IntegerParser(), "number": flags.FloatParser(), "flag": flags.BooleanParser(),
            "ints": tuple_parser.TupleParser(), "numbers": tuple_parser.TupleParser()}


# ------------------------------------------------------------------------------------- overrides


def _read_overrides(argv: Sequence[str], kinds: dict) -> list[tuple[str, Optional[str], str, tuple]]:
    """(field, value text or None, the argument as given, its positions in argv) of every --config.X.

    `kinds` maps known dotted fields to their schema kind: a True/False field takes no separate value
    (as absl's boolean flags), any other field given without '=' takes the next argument.
    """
    overrides, position = [], 1
    while position < len(argv):
        arg = argv[position]
        position += 1
        if arg == "--":  # absl: the rest are positional arguments
            break
        match = _OVERRIDE.match(arg)
        if not match:
            continue
        positions = (position - 1,)
        negated, name, value = match.group(1), match.group(2), match.group(3)
        if negated:
            value = "false" if value is None and kinds.get(name) == "flag" else None
        elif value is None and kinds.get(name) == "flag":
            value = "true"
        elif value is None and name in kinds and position < len(argv) and not argv[position].startswith("--"):
            value, arg, positions = argv[position], f"{arg} {argv[position]}", (position - 1, position)
            position += 1
        overrides.append((name, value, arg, positions))
    return overrides


def _value_problem(name: str, value: Optional[str], arg: str, family: str) -> Optional[str]:
    """The message if `value` (command-line text) cannot be a value of schema field `name`, else None."""
    from superfed_jax import config_schema  # late: flags are parsed before anything heavy is imported

    entry = config_schema.field(name, family)
    if value is None:
        if arg.lstrip("-").startswith("no"):
            return (f"{name}: {arg.split('=')[0]} takes no value and is only for True/False fields; give "
                    f"--config.{name}=VALUE ({entry.requirement()})")
        return f"{name}: no value; give --config.{name}=VALUE ({entry.requirement()})"
    parser = _PARSERS.get(entry.kind)
    if parser is None:  # text and choice fields take any string; check_config judges it
        return None
    try:
        parsed = parser.parse(value)
    except (ValueError, TypeError, SyntaxError):
        return entry.problem(value)
    element = int if entry.kind == "ints" else (int, float)
    if entry.kind in ("ints", "numbers") and not all(
            isinstance(v, element) and not isinstance(v, bool) for v in parsed):
        return entry.problem(value)
    return None


def command_line_family(argv: Sequence[str]) -> Optional[str]:
    """The family a `--config.model.family=NAME` in `argv` names (the last one), or None."""
    from superfed_jax import config_schema

    kinds = {entry.name: entry.kind for entry in config_schema.FIELDS}
    named = [value for name, value, _, _ in _read_overrides(argv, kinds) if name == "model.family"]
    return named[-1] if named and named[-1] is not None else None


def config_file_family(argv: Sequence[str]) -> Optional[str]:
    """The `model.family` of the config file `argv`'s `--config` names (the default config without one),
    or None when the file cannot be loaded here (ml_collections then reports why, as usual).

    Overrides are checked against that family's fields before ml_collections loads the file: a TCN config
    takes `--config.space.channels`, which the default family's space does not have.
    """
    import importlib.util

    found = _cli.config_argument(argv)
    path, _, arg = (found[1] if found else DEFAULT_CONFIG).partition(":")
    try:
        spec = importlib.util.spec_from_file_location("_superfed_config_probe", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return str(module.get_config(arg).model.family)
    except Exception:  # noqa: BLE001 - any failure here is reported by ml_collections' own load
        return None


def split_family_switch(argv: Sequence[str], family: str) -> tuple[list[str], list[tuple[str, str]]]:
    """`argv` without `--config.model.family` and the `--config.space.X` overrides, and those overrides.

    The config file builds the space of its own family, which lacks another family's fields, so a family
    named on the command line is switched to after the file is loaded (`config.with_family`) and only
    then are the space overrides applied (`apply_space_overrides`).
    """
    from superfed_jax import config_schema

    kinds = {entry.name: entry.kind for entry in config_schema.schema_fields(family)}
    taken, space = set(), []
    for name, value, _, positions in _read_overrides(argv, kinds):
        if name == "model.family" or name.startswith("space."):
            taken.update(positions)
            if name.startswith("space."):
                space.append((name, value))
    return [arg for position, arg in enumerate(argv) if position not in taken], space


def apply_space_overrides(config, overrides: Sequence[tuple[str, str]]) -> None:
    """Sets `--config.space.X=V` values (checked by `override_problems`) on the switched config."""
    from superfed_jax import config_schema

    family = config.model.family
    for name, value in overrides:
        kind = config_schema.field(name, family).kind
        parsed = _PARSERS[kind].parse(value) if kind in _PARSERS else value
        config.space[name.partition(".")[2]] = tuple(parsed) if kind in ("ints", "numbers") else parsed


def last_override_wins(argv: Sequence[str]) -> list[str]:
    """`argv` without the earlier occurrences of a `--config.X` given more than once (and their values).

    absl keeps the last value of a repeated flag, but ml_collections joins the values of a repeated tuple
    field; dropping the earlier ones makes the last one win for every field.
    """
    from superfed_jax import config_schema

    kinds = {entry.name: entry.kind for entry in config_schema.FIELDS}
    overrides = _read_overrides(argv, kinds)
    last = {name: positions for name, _, _, positions in overrides}  # a later one replaces an earlier one
    dropped = {p for name, _, _, positions in overrides if positions != last[name] for p in positions}
    return [arg for position, arg in enumerate(argv) if position not in dropped]


def override_problems(argv: Sequence[str], family: Optional[str] = None) -> list[str]:
    """One line per bad `--config...` in `argv` (argv[0] is the program): [] if they are all usable.

    Finds a --config=PATH naming no file, fields the config does not have (with the nearest field name), values that are not of the
    field's kind (an integer, a number, True/False, a tuple), `--noconfig.X` for a field that is not
    True/False, and a missing value. Ranges and allowed names are left to
    `validation.check_config`, which sees the whole config. `family`: the one named by
    `--config.model.family` (whose space fields apply), None for the default family.
    """
    from superfed_jax import config_schema
    from superfed_jax import validation

    family = family or config_schema.DEFAULT_FAMILY
    try:
        kinds = {entry.name: entry.kind for entry in config_schema.schema_fields(family)}
    except ValueError as error:  # a family that cannot be found: nothing else can be judged
        return [str(error)]
    overrides = _read_overrides(argv, kinds)
    config_file = validation.config_file_problem(argv)
    problems = [config_file] if config_file else []
    for name, value, arg, _ in overrides:
        unknown = validation.unknown_field(name, family)
        if unknown:
            problem = unknown
        elif name not in kinds:  # a whole section: ml_collections parses (and judges) it
            problem = None
        else:
            problem = _value_problem(name, value, arg, family)
        if problem and problem not in problems:
            problems.append(problem)
    return problems


# ------------------------------------------------------------------------------------- help


_CONFIG_HELP = re.compile(r"^--?config_help(?:=(.*))?$", re.DOTALL)


def program_name(argv: Sequence[str]) -> str:
    """How the command was called, for its help: 'python launch.py' or 'superfed-train'."""
    base = os.path.basename(argv[0]) if argv else "superfed-train"
    return f"python {base}" if base.endswith(".py") else base


def help_text(program: str = "superfed-train") -> str:
    """What `--help` prints: the usage, the command's own flags and how to list the config's fields."""
    from superfed_jax import config_reference  # the section names, read from the schema

    configs = ", ".join(_cli.packaged_config_names())
    sections = ", ".join(config_reference.section_names())
    examples = [(f"{program} --config_help", "every field"),
                (f"{program} --config_help=server,dp", "some sections, or fields (fl.rounds)"),
                (f"{program} --config=shakespeare --config_help=space", "another family's space (the TCN's)"),
                ("superfed-config --help", "the same reference without a config"),
                (config_reference.DOC_PATH, "the same reference as a document")]
    width = max(len(command) for command, _ in examples) + 2
    return "\n".join([
        f"{program}: train (or resume) a SuperFed run.",
        "",
        f"usage: {program} [--config=CONFIG[:VARIANT]] [--workdir=DIR] [--config.SECTION.FIELD=VALUE ...]",
        "",
        "flags:",
        "  --config=CONFIG[:VARIANT]    the experiment config: a file or a packaged config by name, with",
        "                               an optional variant (digits:smoke, cifar10:fedavg=largest);",
        f"                               packaged: {configs}. Default: digits",
        "  --workdir=DIR                the run's directory; default workdirs/<config>[_<variant>]",
        "                               (workdirs/npz_<file> for .npz data). The same command again resumes",
        "  --config.SECTION.FIELD=V     override one config field (--config.fl.rounds=10); the last one wins",
        "  --config_help[=SECTION,...]  list the config's fields and exit: default, allowed values, what",
        "                               each does, whether a resume may change it",
        "  --flagfile=FILE              read more flags from FILE",
        "  --helpfull                   every flag, JAX's and absl's included",
        "",
        "The config's fields, for the config this command would train (with its family's space fields):",
        *[f"  {command:<{width}}{what}" for command, what in examples],
        f"Sections: {sections}.",
        "",
    ])


def config_help_sections(argv: Sequence[str]) -> Optional[list[str]]:
    """The sections a `--config_help[=S,...]` in `argv` asks for ([] = all), or None if it asks nothing."""
    sections = None
    for arg in argv[1:]:
        if arg == "--":
            break
        match = _CONFIG_HELP.match(arg)
        if match:
            sections = [s for s in (match.group(1) or "").split(",") if s.strip()]
    return sections


def print_config_help(argv: Sequence[str], sections: Sequence[str]) -> None:
    """Prints the reference of `sections` (all if empty) for the family the command line would train:
    `--config.model.family`, else the config file's own; exits 0, or 2 for an unknown section."""
    from superfed_jax import config_reference

    family = command_line_family(argv) or config_file_family(argv) or config_reference.family_lib.DEFAULT_FAMILY
    with _cli.user_errors():
        text = config_reference.format_text(family, sections or None)
    sys.stdout.write(text)
    sys.exit(0)


# ------------------------------------------------------------------------------------- the command


def _define_flags(argv: Sequence[str]) -> None:
    """Defines --config (overrides read from `argv`) and --workdir, once per process."""
    if "config" in flags.FLAGS:
        return
    config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Experiment config file.", lock_config=True,
                                    sys_argv=list(argv))
    flags.DEFINE_string("workdir", "", "Output directory (default: workdirs/<config>[_<variant>], "
                        "workdirs/npz_<file>[_<variant>] for .npz data).")
    flags.DEFINE_string("config_help", None, "List the config's fields (default, allowed values, doc, "
                        "resume rule) and exit; =SECTION[,SECTION...] for some of them (superfed-config).")


def _without_overwrite(config) -> str:
    """The caveat for 'rerun the same command' when that command would start over."""
    if not config.get("overwrite", False):
        return ""
    return " (without --config.overwrite=True, which would delete the run and start over)"


def _stopped_text(stopped, workdir: str, config) -> str:
    """What a run stopped by a signal outside the round loop says (`preemption.stopped_message`)."""
    from superfed_jax.run import workdir as workdir_lib

    return (preemption.stopped_message(stopped.signal_name, workdir_lib.newest_checkpoint(workdir), workdir)
            + _without_overwrite(config))


def _config_value(argv: Sequence[str]) -> str:
    """The `--config` value ('PATH[:VARIANT]') of the command line `argv`, or the default config's path."""
    found = _cli.config_argument(argv)
    return found[1] if found else DEFAULT_CONFIG


def _run(argv: Sequence[str], family: Optional[str] = None, space_overrides=(),
         config_argv: Optional[Sequence[str]] = None) -> None:
    """Validates the parsed config and trains (absl's main, called with the positional arguments).

    `family` and `space_overrides`: a family named on the command line and the space fields given for it
    (`split_family_switch`), applied to the loaded config first. `config_argv`: the command line whose
    `--config` names the default workdir (`workdir.default_workdir`).
    """
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO; progress has its own line

    from superfed_jax.run import workdir as workdir_lib

    config = flags.FLAGS.config
    workdir = flags.FLAGS.workdir or workdir_lib.default_workdir(
        _config_value(sys.argv if config_argv is None else config_argv), config.data.name,
        config.data.get("path"))
    try:
        # Until the round loop, which handles signals itself.
        with preemption.stop_on_termination(lambda lost: _stopped_text(lost, workdir, config)):
            # Imported late so absl parses flags before JAX initialises.
            from superfed_jax import validation
            from superfed_jax.run import distributed
            from superfed_jax.run import train

            if family is not None:
                from superfed_jax import config as config_lib

                config = config_lib.with_family(config, family)
                apply_space_overrides(config, space_overrides)
            validation.check_config(config, check_files=not config.dry_run)  # a dry run reads no data
            distributed.initialize(config.distributed)  # multi-host only; before any backend is touched
            # Before anything compiles: JAX decides once per process whether its disk cache is used.
            _compilation_cache.enable(config.get("compilation_cache", ""))
            if distributed.is_writer():
                print(f"workdir: {workdir}", flush=True)
                if config.get("note") and not config.dry_run:  # config_schema: field 'note'
                    print(f"note: {config.note}", flush=True)
            train.train_and_evaluate(config, workdir)
    except preemption.Interrupted as interrupted:  # checkpointed: the same command resumes
        print(f"{interrupted}{_without_overwrite(config)}", file=sys.stderr)
        sys.exit(preemption.EXIT_INTERRUPTED)
    except preemption.Stopped as stopped:  # a signal outside the round loop: nothing to finish
        preemption.exit_now(_stopped_text(stopped, workdir, config))  # the with-blocks have closed their files
    except KeyboardInterrupt:  # a second signal during a round: stopped at once, without a checkpoint
        print(preemption.stopped_message("a second signal", workdir_lib.newest_checkpoint(workdir),
                                         workdir).replace("outside a training round", "during a round")
              + _without_overwrite(config), file=sys.stderr)
        sys.exit(preemption.EXIT_INTERRUPTED)
    except workdir_lib.RunIOError as failure:
        if _cli.debugging():
            raise
        print(f"error: {failure}", file=sys.stderr)
        sys.exit(preemption.EXIT_INTERRUPTED if failure.resumable else EXIT_USAGE)
    except (ValueError, FileNotFoundError) as error:  # bad config or data: a message, not a traceback
        if _cli.debugging():
            raise
        _cli.fail(str(error), debug_hint=True)
    except OSError as error:  # a filesystem failure outside the driver (reading the data, the workdir)
        if _cli.debugging():
            raise
        failure = workdir_lib.io_failure(error, workdir, "reading or writing the run's files")
        print(f"error: {failure}", file=sys.stderr)
        sys.exit(preemption.EXIT_INTERRUPTED if failure.resumable else EXIT_USAGE)
    finally:  # the run has ended and said how: a late signal must not claim nothing was written
        preemption.ignore_termination()


def main(argv: Sequence[str]) -> None:
    """Runs the training command for `argv` (argv[0] is the program name, as in `sys.argv`).

    Exits the process: 0 after a finished run; 2 with one `error:` message for a bad flag, config or
    data, a workdir in use by another run or holding results it cannot continue, a filesystem failure
    that needs fixing first (read-only, no permission), or a run in which nothing trained;
    `preemption.EXIT_INTERRUPTED` (75) after a signal (during start-up or a round) or a full disk: the
    same command then continues. The flags are defined on absl's global flags once per process, so call
    it once per process.
    """
    preemption.exit_on_termination_while_starting()  # a caller that imported this module: from here on
    _console.quiet_backend_probe()
    if any(arg in _cli.HELP_ARGUMENTS for arg in argv[1:]):  # the command's own flags, and --config_help
        sys.stdout.write(help_text(program_name(argv)))
        sys.exit(0)
    argv = flags.FLAGS.read_flags_from_files(list(argv), force_gnu=False)  # expands --flagfile=F
    argv = _cli.resolve_config_argv(argv)  # `digits:smoke`, or configs/X.py from outside the repository
    if config_help_sections(argv) is not None:  # the fields of the config this command would train
        print_config_help(argv, config_help_sections(argv))
    argv = last_override_wins(argv)
    family = command_line_family(argv)
    # Before ml_collections, which raises on an unknown field: against the fields of the family that runs.
    problems = override_problems(argv, family or config_file_family(argv))
    if problems:
        _cli.fail("\n".join(problems))
    space_overrides = []
    if family is not None:  # switched to after the config file is loaded (`split_family_switch`)
        argv, space_overrides = split_family_switch(argv, family)
    try:
        _define_flags(argv)  # loads the config file named in argv
    except _cli.FLAG_ERRORS as error:
        if _cli.debugging():
            raise
        _cli.fail(_cli.flag_error_message(error), debug_hint=True)
    app.run(functools.partial(_run, family=family, space_overrides=space_overrides, config_argv=argv),
            argv=argv, flags_parser=_cli.parse_flags)


def console() -> None:
    """The `superfed-train` console script: `main(sys.argv)`."""
    main(sys.argv)


if __name__ == "__main__":
    console()
