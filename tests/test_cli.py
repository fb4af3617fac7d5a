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
    assert _cli.parse_flags(["prog", "--cli_test_count=3"]) == ["prog"]
    assert flags.FLAGS.cli_test_count == 3


@pytest.mark.parametrize("argv", [["prog", "--cli_test_count=3", "rest"], ["prog", "--", "rest", "more"]])
def test_a_positional_argument_is_one_message_not_ignored(capsys, argv):
    # absl hands positional arguments to main, and every main dropped them (`del argv`).
    status, err = exit_of(capsys, _cli.parse_flags, argv)
    assert status == 2 and err.startswith("error: unexpected argument") and len(err.splitlines()) == 1, err
    assert "'rest'" in err and "nothing was run" in err


# Every command a user can run (pyproject.toml's console scripts, launch.py, benchmarks/claim.py) with a
# stray positional argument: `superfed-train configs/cifar10.py` trained the default digits config.
STRAY_COMMANDS = {
    "superfed-train": ["launch.py"],
    "launch.py": ["launch.py", "--workdir={tmp}/run"],
    "claim.py": ["benchmarks/claim.py", "--out={tmp}/claim"],
}
# The console scripts, with their required flags (absl judges those first).
for _name, _module, _flags in [
        ("superfed-search", "superfed_jax.posttrain.search", ["--workdir={tmp}/run"]),
        ("superfed-export", "superfed_jax.posttrain.export",
         ["--workdir={tmp}/run", "--arch=largest", "--out={tmp}/export"]),
        ("superfed-evaluate", "superfed_jax.posttrain.evaluate_export", ["--model={tmp}/export"]),
        ("superfed-cost", "superfed_jax.reports.arch_size", []),
        ("superfed-memory", "superfed_jax.run.memory", []),
        ("superfed-config", "superfed_jax.config_reference", [])]:
    STRAY_COMMANDS[_name] = ["-c", f"from {_module} import console; console()", *_flags]


def test_every_command_refuses_a_stray_positional_argument(tmp_path):
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    # superfed-report takes RUN_DIRs as positional arguments: none of its arguments is stray.
    assert set(scripts) - {"superfed-report"} <= set(STRAY_COMMANDS), "a new command: add it here"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    # Started together: each spends its second importing JAX.
    processes = {name: subprocess.Popen(
        [sys.executable, *[a.format(tmp=tmp_path) for a in args], "configs/cifar10.py"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name, args in STRAY_COMMANDS.items()}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        assert (process.returncode, stdout) == (2, ""), (name, stdout, stderr)
        assert stderr.startswith("error: unexpected argument 'configs/cifar10.py'"), (name, stderr)
        assert stderr.count("\n") == 1 and "--config=PATH" in stderr, (name, stderr)
    assert os.listdir(tmp_path) == []  # nothing trained, nothing written


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


def test_every_absl_command_runs_through_the_shared_path():
    import inspect
    from superfed_jax.posttrain import evaluate_export, export, search
    from superfed_jax.reports import arch_size, cli
    from superfed_jax.run import memory
    for module in (export, search, evaluate_export, arch_size, memory):
        assert "_cli.run(main, _define_flags" in inspect.getsource(module.console), module.__name__
    # superfed-report too (it was the one argparse command): its RUN_DIRs are absl's positional arguments.
    assert "_cli.run(_main, _define_flags" in inspect.getsource(cli.main)
    assert "argparse" not in inspect.getsource(cli)


# ------------------------------------------------------------------- --config found from anywhere


@pytest.fixture
def packaged(tmp_path, monkeypatch):
    """A packaged-configs folder (digits, cifar10) and an empty cwd, so only what a test makes exists."""
    directory = tmp_path / "package_configs"
    directory.mkdir()
    for name in ("__init__", "digits", "cifar10"):
        (directory / f"{name}.py").write_text("")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return str(directory)


@pytest.mark.parametrize("value, expected", [
    ("digits", "{p}/digits.py"),                               # a bare name
    ("digits.py", "{p}/digits.py"),
    ("digits:smoke", "{p}/digits.py:smoke"),                   # the variant kept
    ("configs/digits.py", "{p}/digits.py"),                    # the README's path, outside the repository
    ("./configs/cifar10.py:smoke,fedavg=largest", "{p}/cifar10.py:smoke,fedavg=largest"),
    ('digits:fedavg={"d":[0,1],"e":0.25}', '{p}/digits.py:fedavg={"d":[0,1],"e":0.25}'),
])
def test_a_missing_config_is_the_packaged_one(packaged, value, expected):
    assert _cli.resolve_config(value, packaged) == (expected.replace("{p}", packaged), True)


def test_an_existing_config_file_is_kept_even_with_a_packaged_namesake(packaged):
    os.makedirs("configs")
    open("configs/digits.py", "w").close()
    open("mine.py", "w").close()
    for value in ("configs/digits.py", "configs/digits.py:smoke", "mine.py", "mine.py:fedavg=largest"):
        assert _cli.resolve_config(value, packaged) == (value, False)


@pytest.mark.parametrize("value, path, state", [
    ("nonexistent", "nonexistent", "does not exist"),           # no such packaged name
    ("configs/nonexistent.py:smoke", "configs/nonexistent.py", "does not exist"),
    ("/elsewhere/digits.py", "/elsewhere/digits.py", "does not exist"),  # a typo'd path is not replaced
    ("__init__", "__init__", "does not exist"),                 # the package file is no config
    (".", ".", "is not a file"),
])
def test_a_config_that_exists_nowhere_is_one_message_naming_the_packaged_ones(packaged, value, path, state):
    with pytest.raises(ValueError) as raised:
        _cli.resolve_config(value, packaged)
    assert str(raised.value) == (f"--config={value}: {path!r} {state}; need a config file such as "
                                 "configs/cifar10.py, or a packaged config by name: cifar10, digits")


@pytest.mark.parametrize("argv, position, value", [
    (["prog"], None, None),
    (["prog", "--config=a.py", "--config.fl.rounds=2"], 1, "a.py"),
    (["prog", "--config", "a.py:smoke"], 2, "a.py:smoke"),
    (["prog", "-config=a.py", "--config=b.py"], 2, "b.py"),      # the last one, as absl
    (["prog", "--config=a.py", "--", "--config=b.py"], 1, "a.py"),  # after '--': positional
    (["prog", "--configs=a.py", "--config.fl.rounds=2"], None, None),
])
def test_config_argument_is_the_last_config_flag(argv, position, value):
    expected = None if position is None else (position, value)
    assert _cli.config_argument(argv) == expected


def test_resolve_config_argv_rewrites_only_the_config_value_and_says_which_file(packaged, capsys):
    argv = ["prog", "--config=digits:smoke", "--config.fl.rounds=2", "x"]
    assert _cli.resolve_config_argv(argv, packaged) == [
        "prog", f"--config={packaged}/digits.py:smoke", "--config.fl.rounds=2", "x"]
    assert capsys.readouterr().err == f"config: {packaged}/digits.py\n"
    assert _cli.resolve_config_argv(["prog", "--config", "cifar10"], packaged) == [
        "prog", "--config", f"{packaged}/cifar10.py"]
    open("mine.py", "w").close()
    capsys.readouterr()
    assert _cli.resolve_config_argv(["prog", "--config=mine.py"], packaged) == ["prog", "--config=mine.py"]
    assert _cli.resolve_config_argv(["prog"], packaged) == ["prog"]
    assert capsys.readouterr().err == ""  # nothing said when the given file (or the default) is used


def test_resolve_config_argv_of_an_unknown_config_exits_2(packaged, capsys):
    status, err = exit_of(capsys, _cli.resolve_config_argv, ["prog", "--config=digitz:smoke"], packaged)
    assert status == 2
    assert err == ("error: --config=digitz:smoke: 'digitz' does not exist; need a config file such as "
                   "configs/cifar10.py, or a packaged config by name: cifar10, digits\n")


def test_the_packaged_configs_are_the_shipped_ones():
    assert _cli.packaged_config_names() == ["cifar10", "cifar100", "custom", "digits", "ptb", "shakespeare"]
    assert os.path.samefile(_cli.PACKAGED_CONFIGS, os.path.join(ROOT, "configs"))
