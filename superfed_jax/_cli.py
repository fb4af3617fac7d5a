"""What every command line of the package shares: a user's mistake is one `error: ...` message on stderr
and exit status 2, never a Python traceback or absl's `FATAL Flags parsing error` (exit 1).

* `fail(message)`: prints the message and exits with `EXIT_USAGE`.
* `parse_flags(argv)`: absl's flag parsing for `app.run(..., flags_parser=parse_flags)`: an unknown flag,
  a value of the wrong kind, a missing required flag, a config file that fails to load or a positional
  argument (only the report takes them, its RUN_DIRs) is one message.
* `user_errors()`: a `with` block in a command's `main` turning the errors that mean "bad input" (a
  ValueError or a filesystem error, already phrased for the user) into `fail`.
* `resolve_config(value)` / `resolve_config_argv(argv)`: `--config=NAME` or `--config=configs/NAME.py`
  that names no file here is the packaged `superfed_jax/configs/NAME.py` (so every command works from
  any directory); a config that exists nowhere is one message naming the packaged configs.
* `run(main, define_flags, argv_checks, config_flag, about, positional)`: the whole absl command:
  `--help` (the command's `about` text and its own flags, `help_text`), the `--config` argument
  resolved, checks on the raw arguments (e.g. a `--config` file that does not exist, which
  ml_collections would report with a traceback), the flags defined (only when run as a program, so
  importing a command's module defines none), `app.run`; the flags it defined are removed again when
  the command ends, so a test may run a command's `main` several times in one process.
* `define_json_flag()`: the `--json` flag of the commands that print a summary (`_readable` writes the
  summary; `--json` prints the exact values for scripts instead).

With the environment variable SUPERFED_DEBUG set, the original exception is raised instead, traceback
and all. This module imports nothing of the package, so commands of every layer may use it.
"""
import contextlib
import functools
import os
import re
import sys
import textwrap
from typing import Callable, NoReturn, Optional, Sequence

from absl import app
from absl import flags

__all__ = ["EXIT_USAGE", "DEBUG_HINT", "FLAG_ERRORS", "PACKAGED_CONFIGS", "debugging", "fail",
           "flag_error_message", "stray_arguments_message", "packaged_config_names", "resolve_config",
           "config_argument", "resolve_config_argv", "parse_flags", "user_errors", "help_text",
           "define_json_flag", "run"]

EXIT_USAGE = 2  # a bad flag, config or input file (also what absl's own usage errors would deserve)
DEBUG_VARIABLE = "SUPERFED_DEBUG"
DEBUG_HINT = f"(set {DEBUG_VARIABLE}=1 for a traceback)"
# What defining and parsing flags raises for a bad command line or config file: absl's errors, and
# whatever a config file's `get_config` raises while ml_collections loads it.
FLAG_ERRORS = (flags.Error, ValueError, TypeError, KeyError, AttributeError, OSError)
_CONFIG_FILE_ERROR = "Error whilst parsing config file:"  # how ml_collections starts a config file's traceback
# The experiment configs installed with the package (the repository's `configs/` links here); a path only,
# so this module still imports nothing of the package.
PACKAGED_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
_CONFIG_FLAG = re.compile(r"^--?config(=|$)")  # --config=V or --config V (not --config.X overrides)
# What asks a command for its own help (absl's --help lists only flags defined in `__main__`, which a
# console script's wrapper has none of, and exits 1); --helpfull stays absl's, every flag of every module.
HELP_ARGUMENTS = ("-h", "-help", "--help", "-helpshort", "--helpshort", "-?")


def debugging() -> bool:
    """Whether SUPERFED_DEBUG asks for tracebacks instead of one-line messages."""
    return bool(os.environ.get(DEBUG_VARIABLE))


def fail(message: str, debug_hint: bool = False) -> NoReturn:
    """Prints `error: message` (and the SUPERFED_DEBUG hint if asked) on stderr; exits with EXIT_USAGE."""
    print(f"error: {message}" + (f"\n{DEBUG_HINT}" if debug_hint else ""), file=sys.stderr, flush=True)
    sys.exit(EXIT_USAGE)


def flag_error_message(error: BaseException) -> str:
    """The message of a flag-parsing error, without the traceback ml_collections copies into it.

    ml_collections reports a config file whose `get_config` raised as 'Error whilst parsing config
    file: <the traceback>'; only the traceback's last line ('ValueError: what') says what is wrong.
    """
    message = str(error).strip()
    if not message:
        return type(error).__name__
    head, marker, trace = message.partition(_CONFIG_FILE_ERROR)
    if not marker:
        return message
    lines = [line for line in trace.strip().splitlines() if line.strip()]
    return head + (lines[-1].split(": ", 1)[-1] if lines else "the config file could not be loaded")


def parse_flags(argv: Sequence[str], positional: bool = False) -> list[str]:
    """absl's flag parsing (app.run's `flags_parser`); a mistake is one `error:` message, exit status 2.

    Unless the command takes `positional` arguments (the report's RUN_DIRs), any left after the flags is
    a mistake too (`stray_arguments_message`); absl alone would hand them to `main`, which ignored them.
    """
    try:
        rest = flags.FLAGS(list(argv))
    except FLAG_ERRORS as error:
        if debugging():
            raise
        # absl's own errors say everything; a config file that failed to load has a traceback worth
        # offering.
        from_config_file = _CONFIG_FILE_ERROR in str(error) or not isinstance(error, flags.Error)
        fail(flag_error_message(error), debug_hint=from_config_file)
    if len(rest) > 1 and not positional:
        fail(stray_arguments_message(rest[1:]))
    return rest


def stray_arguments_message(stray: Sequence[str]) -> str:
    """What a command says of positional arguments it does not take (`superfed-train configs/cifar10.py`
    would otherwise train the default config without a word)."""
    shown = " ".join(repr(arg) for arg in stray[:3]) + (" ..." if len(stray) > 3 else "")
    hint = ""
    if any(arg.endswith(".py") or ".py:" in arg for arg in stray):
        hint = "; a config file is given as --config=PATH"
    return (f"unexpected argument{'s' if len(stray) > 1 else ''} {shown}: this command takes only flags "
            f"(--name=value){hint}; nothing was run")


def packaged_config_names(directory: str = PACKAGED_CONFIGS) -> list[str]:
    """The names (without `.py`) of the config files in `directory`, sorted; `__init__` is no config."""
    try:
        files = os.listdir(directory)
    except OSError:
        return []
    return sorted(name[:-3] for name in files if name.endswith(".py") and not name.startswith("_"))


def resolve_config(value: str, directory: str = PACKAGED_CONFIGS) -> tuple[str, bool]:
    """The `--config` value to load for `value` ('PATH[:VARIANT]'), and whether it is a packaged one.

    A PATH that is a file is kept. Otherwise a bare name (`digits`, `digits.py`) or a path into a
    `configs` folder (`configs/digits.py`, as the README writes it from the repository root) is the
    packaged config of that name in `directory`, the variant kept (`digits:smoke` ->
    '<directory>/digits.py:smoke'). Only those two forms fall back: a missing file anywhere else is a
    typo the user should hear about, not silently replaced by a shipped config of the same name.

    Raises:
      ValueError: the config exists nowhere (the message names the value and the packaged configs).
    """
    path, colon, variant = value.partition(":")  # as ml_collections splits it
    if os.path.isfile(path):
        return value, False
    folder, base = os.path.split(os.path.normpath(path)) if path else ("", "")
    name = base[:-3] if base.endswith(".py") else base
    names = packaged_config_names(directory)
    falls_back = folder in ("", "configs") and name in names and not os.path.exists(path)
    if falls_back:
        return os.path.join(directory, name + ".py") + colon + variant, True
    state = "is not a file" if os.path.exists(path) else "does not exist"
    raise ValueError(f"--config={value}: {path!r} {state}; need a config file such as configs/cifar10.py, "
                     f"or a packaged config by name: {', '.join(names) or '(none found)'}")


def config_argument(argv: Sequence[str]) -> Optional[tuple[int, str]]:
    """(position in argv, value) of the last `--config=V` / `--config V` in `argv`, or None.

    absl keeps the last of a repeated flag; arguments after `--` are positional and not looked at.
    """
    found = None
    for position, arg in enumerate(argv[1:], start=1):
        if arg == "--":
            break
        match = _CONFIG_FLAG.match(arg)
        if match and match.group(1) == "=":
            found = (position, arg.split("=", 1)[1])
        elif match and position + 1 < len(argv):
            found = (position + 1, argv[position + 1])
    return found


def resolve_config_argv(argv: Sequence[str], directory: str = PACKAGED_CONFIGS) -> list[str]:
    """`argv` with its `--config` value resolved by `resolve_config`; a fallback is said on stderr.

    Done on the raw arguments, before ml_collections loads the file named there. A packaged config
    used in place of a missing path is printed as `config: <file>` (one line), so the user sees which
    file ran. A config that exists nowhere ends the command (`fail`, exit status 2).
    """
    argv = list(argv)
    found = config_argument(argv)
    if found is None:
        return argv
    position, value = found
    try:
        resolved, packaged = resolve_config(value, directory)
    except ValueError as error:
        fail(str(error))
    if packaged:
        print(f"config: {resolved.partition(':')[0]}", file=sys.stderr, flush=True)
        argv[position] = (argv[position].split("=", 1)[0] + "=" + resolved if argv[position].startswith("-")
                          else resolved)
    return argv


@contextlib.contextmanager
def user_errors(kinds: tuple = (ValueError, OSError), debug_hint: bool = False):
    """Within the block, an exception of `kinds` ends the command with `fail(str(error))`.

    For errors whose message already names the file or field, the problem and what to do (the
    package's ValueErrors and FileNotFoundErrors; an OSError names its path). Any other exception is a
    bug and keeps its traceback.
    """
    try:
        yield
    except kinds as error:
        if debugging():
            raise
        fail(str(error).strip() or type(error).__name__, debug_hint=debug_hint)


def help_text(about: str, defined: Sequence[flags.Flag]) -> str:
    """What a command's `--help` prints: `about` (what it does and its usage line), then each of its own
    flags with its help and default. absl's own `--help` lists the flags of `__main__` only, none for a
    console script; `--helpfull` stays absl's, every flag of every module."""
    lines = []
    for paragraph in about.strip().split("\n\n"):  # each paragraph wrapped, a blank line between them
        lines += textwrap.wrap(" ".join(paragraph.split()), width=100, subsequent_indent="    ") + [""]
    lines.append("flags:")
    for flag in defined:
        value = "" if flag.boolean else "=VALUE"
        default = "" if flag.default is None else f" (default: {_default_text(flag)})"
        lines.append(f"  --{flag.name}{value}")
        lines += textwrap.wrap(" ".join(str(flag.help).split()) + default, width=100, break_long_words=False,
                               break_on_hyphens=False, initial_indent="      ", subsequent_indent="      ")
    lines += ["", "--helpfull lists every flag, absl's own included."]
    return "\n".join(lines) + "\n"


def _default_text(flag: flags.Flag) -> str:
    """A flag's default as typed on a command line: strings quoted, booleans true/false, numbers bare."""
    default = flag.default
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, (int, float)):
        return str(default)
    return repr(default) if isinstance(default, str) else flag.default_as_str


def define_json_flag() -> None:
    """Defines `--json`: one JSON object of exact values and absolute paths instead of the summary."""
    flags.DEFINE_bool("json", False, "Print one JSON object per result, every value exact and every path "
                      "absolute (for scripts), instead of the readable summary.")


def run(main: Callable[[list], None], define_flags: Callable[[], None],
        argv_checks: Sequence[Callable[[Sequence[str]], Optional[str]]] = (),
        argv: Optional[Sequence[str]] = None, config_flag: bool = False, about: Optional[str] = None,
        positional: bool = False) -> None:
    """Runs an absl command: `--help`, `argv_checks` on the raw arguments, `define_flags()`, `app.run(main)`.

    Ends with `sys.exit` (absl's `app.run`): status 0, or `EXIT_USAGE` with one `error:` line.

    Args:
      main: absl's main, called with the program name and the positional arguments once the flags are
        parsed.
      define_flags: defines the command's flags (called once, here, so that importing the command's
        module defines nothing).
      argv_checks: each returns a problem of the raw arguments as one line, or None; every problem found
        ends the command before anything is defined or loaded.
      argv: the arguments, program name first (default: `sys.argv`).
      config_flag: the command defines `--config` (ml_collections): its value is resolved first
        (`resolve_config_argv`), so a packaged config is found from any directory.
      about: what `--help` prints above the flags (`help_text`); default: the usage line alone.
      positional: the command takes positional arguments (they reach `main`); otherwise one is an error.
    """
    argv = list(sys.argv if argv is None else argv)
    app.define_help_flags()  # absl's --helpfull & co. stay defined across the commands of one process
    before = set(flags.FLAGS)
    try:
        if any(arg in HELP_ARGUMENTS for arg in argv[1:]):  # before any check: help needs no valid input
            define_flags()
            program = os.path.basename(argv[0]) if argv else "command"
            defined = [flags.FLAGS[name] for name in flags.FLAGS if name not in before]
            sys.stdout.write(help_text(about or f"usage: {program} [flags]", defined))
            sys.exit(0)
        if config_flag:
            argv = resolve_config_argv(argv)
        problems = [problem for check in argv_checks if (problem := check(argv))]
        if problems:
            fail("\n".join(problems))
        define_flags()
        app.run(main, argv=argv, flags_parser=functools.partial(parse_flags, positional=positional))
    finally:  # a command's flags are its own: the next command run in this process defines them afresh
        for name in set(flags.FLAGS) - before:
            delattr(flags.FLAGS, name)


def split_variants(arg: str) -> list[str]:
    """The comma-separated variants of the `:ARG` of `--config=FILE:ARG`, each stripped (empty ones kept,
    for the caller to judge). An arch JSON holds commas of its own ({"d":[0,1],"e":0.25}); only top-level
    commas separate."""
    parts, depth, start = [], 0, 0
    for position, char in enumerate(arg):
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            parts.append(arg[start:position])
            start = position + 1
    parts.append(arg[start:])
    return [part.strip() for part in parts]
