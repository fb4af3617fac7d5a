"""The command lines' shared error handling (`superfed_jax._cli`): one `error:` line, exit status 2."""
import os
import subprocess
import sys

import pytest
from absl import flags

from superfed_jax import _cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if "cli_test_count" not in flags.FLAGS:  # a flag of this test process only, to parse in-process
    flags.DEFINE_integer("cli_test_count", 1, "A flag for tests/test_cli.py.")


def exit_of(capsys, function, *args):
    """(exit status, stderr) of `function(*args)`, which must exit."""
    with pytest.raises(SystemExit) as exited:
        function(*args)
    return exited.value.code, capsys.readouterr().err


def test_fail_prints_one_error_line_and_exits_2(capsys):
    assert exit_of(capsys, _cli.fail, "x: must be >= 1") == (2, "error: x: must be >= 1\n")
    assert exit_of(capsys, _cli.fail, "y", True) == (2, f"error: y\n{_cli.DEBUG_HINT}\n")


def test_flag_error_message_keeps_what_a_config_file_raised_and_drops_its_traceback():
    copied = ("flag --config=c.py: Error whilst parsing config file:\nTraceback (most recent call last):\n"
              '  File "c.py", line 2, in get_config\nValueError: fl.rounds must be positive\n')
    assert _cli.flag_error_message(ValueError(copied)) == "flag --config=c.py: fl.rounds must be positive"
    assert _cli.flag_error_message(flags.Error("Unknown command line flag 'x'")) == (
        "Unknown command line flag 'x'")
    assert _cli.flag_error_message(KeyError()) == "KeyError"  # never an empty message


@pytest.mark.parametrize("argv, message", [
    (["prog", "--cli_test_count=abc"], "error: flag --cli_test_count=abc: invalid literal for int()"),
    (["prog", "--no_such_flag_here=1"], "error: Unknown command line flag 'no_such_flag_here'"),
])
def test_a_bad_flag_is_one_message_and_exit_2(capsys, argv, message):
    status, err = exit_of(capsys, _cli.parse_flags, argv)
    assert status == 2 and err.startswith(message) and len(err.splitlines()) == 1, err


def test_a_good_flag_is_parsed():
    assert _cli.parse_flags(["prog", "--cli_test_count=3", "rest"]) == ["prog", "rest"]
    assert flags.FLAGS.cli_test_count == 3


def test_user_errors_turns_bad_input_into_one_message_and_keeps_bugs(capsys, monkeypatch):
    def raising(error):
        with _cli.user_errors():
            raise error

    monkeypatch.delenv(_cli.DEBUG_VARIABLE, raising=False)
    assert exit_of(capsys, raising, ValueError("run.json: not valid JSON")) == (
        2, "error: run.json: not valid JSON\n")
    status, err = exit_of(capsys, raising, PermissionError(13, "Permission denied", "/out/search.json"))
    assert status == 2 and err == "error: [Errno 13] Permission denied: '/out/search.json'\n"
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        raising(ZeroDivisionError("x"))
    monkeypatch.setenv(_cli.DEBUG_VARIABLE, "1")
    with pytest.raises(ValueError):  # SUPERFED_DEBUG: the traceback instead of the message
        raising(ValueError("run.json: not valid JSON"))


def test_run_stops_on_an_argv_problem_before_defining_flags(capsys):
    defined = []
    status, err = exit_of(capsys, _cli.run, lambda argv: None, lambda: defined.append(1),
                          [lambda argv: None, lambda argv: f"--config={argv[1]}: does not exist"],
                          ["prog", "no_such.py"])
    assert (status, err, defined) == (2, "error: --config=no_such.py: does not exist\n", [])


# A command as the posttrain ones are built (a required flag, `_cli.run`), in a fresh process: the
# flags are global, and absl's FATAL would end this one.
REQUIRED_FLAG_COMMAND = """
from absl import flags
from superfed_jax import _cli

def define():
    flags.DEFINE_string("arch", None, "An arch.")
    flags.mark_flag_as_required("arch")

_cli.run(lambda argv: print("ran"), define)
"""


def test_a_missing_required_flag_is_one_message_not_absl_s_fatal():
    # absl alone (app.run without flags_parser) prints "FATAL Flags parsing error" and exits 1.
    result = subprocess.run([sys.executable, "-c", REQUIRED_FLAG_COMMAND, "--other=1"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr.startswith("error: Unknown command line flag 'other'") and result.stderr.count("\n") == 1
    result = subprocess.run([sys.executable, "-c", REQUIRED_FLAG_COMMAND], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr == "error: flag --arch=None: Flag --arch must have a value other than None.\n"


def test_every_posttrain_command_runs_through_the_shared_path():
    import inspect
    from superfed_jax.posttrain import evaluate_export, export, search
    for module in (export, search, evaluate_export):
        assert "_cli.run(main, _define_flags)" in inspect.getsource(module.console), module.__name__
