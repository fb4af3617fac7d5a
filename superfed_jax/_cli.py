"""What every command line of the package shares: a user's mistake is one `error: ...` message on stderr
and exit status 2, never a Python traceback or absl's `FATAL Flags parsing error` (exit 1).

* `fail(message)`: prints the message and exits with `EXIT_USAGE`.
* `parse_flags(argv)`: absl's flag parsing for `app.run(..., flags_parser=parse_flags)`: an unknown flag,
  a value of the wrong kind, a missing required flag or a config file that fails to load is one message.
* `user_errors()`: a `with` block in a command's `main` turning the errors that mean "bad input" (a
  ValueError or a filesystem error, already phrased for the user) into `fail`.
* `run(main, define_flags, argv_checks)`: the whole absl command: checks on the raw arguments (e.g. a
  `--config` file that does not exist, which ml_collections would report with a traceback), the flags
  defined (only when run as a program, so importing a command's module defines none), `app.run`.

With the environment variable SUPERFED_DEBUG set, the original exception is raised instead, traceback
and all. This module imports nothing of the package, so commands of every layer may use it.
"""
import contextlib
import os
import sys
from typing import Callable, NoReturn, Optional, Sequence

from absl import app
from absl import flags

__all__ = ["EXIT_USAGE", "DEBUG_HINT", "FLAG_ERRORS", "debugging", "fail", "flag_error_message",
           "parse_flags", "user_errors", "run"]

EXIT_USAGE = 2  # a bad flag, config or input file (also what absl's own usage errors would deserve)
DEBUG_VARIABLE = "SUPERFED_DEBUG"
DEBUG_HINT = f"(set {DEBUG_VARIABLE}=1 for a traceback)"
# What defining and parsing flags raises for a bad command line or config file: absl's errors, and
# whatever a config file's `get_config` raises while ml_collections loads it.
FLAG_ERRORS = (flags.Error, ValueError, TypeError, KeyError, AttributeError, OSError)
_CONFIG_FILE_ERROR = "Error whilst parsing config file:"  # how ml_collections starts a config file's traceback


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


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl's flag parsing (app.run's `flags_parser`); a mistake is one `error:` message, exit status 2."""
    try:
        return flags.FLAGS(list(argv))
    except FLAG_ERRORS as error:
        if debugging():
            raise
        # absl's own errors say everything; a config file that failed to load has a traceback worth
        # offering.
        from_config_file = _CONFIG_FILE_ERROR in str(error) or not isinstance(error, flags.Error)
        fail(flag_error_message(error), debug_hint=from_config_file)


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


def run(main: Callable[[list], None], define_flags: Callable[[], None],
        argv_checks: Sequence[Callable[[Sequence[str]], Optional[str]]] = (),
        argv: Optional[Sequence[str]] = None) -> None:
    """Runs an absl command: `argv_checks` on the raw arguments, `define_flags()`, then `app.run(main)`.

    Args:
      main: absl's main, called with the positional arguments once the flags are parsed.
      define_flags: defines the command's flags (called once, here, so that importing the command's
        module defines nothing).
      argv_checks: each returns a problem of the raw arguments as one line, or None; every problem found
        ends the command before anything is defined or loaded.
      argv: the arguments, program name first (default: `sys.argv`).
    """
    argv = list(sys.argv if argv is None else argv)
    problems = [problem for check in argv_checks if (problem := check(argv))]
    if problems:
        fail("\n".join(problems))
    define_flags()
    app.run(main, argv=argv, flags_parser=parse_flags)
