"""The persistent compilation cache switch (superfed_jax/_compilation_cache.py): where the cache lives for
each setting and environment, what the config accepts, what JAX is told, and that a second run of the
same programs loads them instead of compiling.

JAX's cache is set once per process, so whatever sets it runs in a subprocess; this process's JAX is
left as conftest.py made it."""
import json
import os
import subprocess
import sys

import pytest

from superfed_jax import _compilation_cache as cache
from superfed_jax import config as config_lib
from superfed_jax import validation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------- where the cache lives


def test_default_directory_is_under_xdg_cache_home_else_home_dot_cache():
    assert cache.default_directory({"XDG_CACHE_HOME": "/xdg", "HOME": "/home/u"}) == "/xdg/superfed_jax/xla"
    assert cache.default_directory({"HOME": "/home/u"}) == "/home/u/.cache/superfed_jax/xla"
    # An empty or relative XDG_CACHE_HOME is ignored (the XDG base directory specification).
    for ignored in ("", "relative/cache"):
        assert (cache.default_directory({"XDG_CACHE_HOME": ignored, "HOME": "/home/u"})
                == "/home/u/.cache/superfed_jax/xla")


def test_the_default_setting_takes_jax_s_variable_before_the_default_directory():
    home = {"HOME": "/home/u"}
    assert cache.resolve("", home) == "/home/u/.cache/superfed_jax/xla"
    assert cache.resolve("", {**home, "JAX_COMPILATION_CACHE_DIR": "/shared/xla"}) == "/shared/xla"
    assert cache.resolve("", {**home, "JAX_COMPILATION_CACHE_DIR": ""}) == "/home/u/.cache/superfed_jax/xla"


def test_a_directory_in_the_config_comes_before_the_variable(tmp_path, monkeypatch):
    environ = {"HOME": "/home/u", "JAX_COMPILATION_CACHE_DIR": "/shared/xla"}
    assert cache.resolve("/mine", environ) == "/mine"
    monkeypatch.chdir(tmp_path)  # a relative directory is taken from the working directory
    assert cache.resolve("xla", environ) == str(tmp_path / "xla")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # `~` is the user's home
    assert cache.resolve("~/xla", environ) == str(tmp_path / "home" / "xla")


@pytest.mark.parametrize("setting", ["", "/mine", "off"])
def test_off_and_jax_s_own_switch_turn_it_off(setting):
    environ = {"HOME": "/home/u", "JAX_COMPILATION_CACHE_DIR": "/shared/xla"}
    assert cache.resolve("off", environ) is None
    for word in ("false", "0", "no", "OFF", " False "):
        assert cache.resolve(setting, {**environ, "JAX_ENABLE_COMPILATION_CACHE": word}) is None
    expected = {"": "/shared/xla", "/mine": "/mine", "off": None}[setting]
    assert cache.resolve(setting, {**environ, "JAX_ENABLE_COMPILATION_CACHE": "true"}) == expected


# ------------------------------------------------------------------------------- the config field


def _problems(config) -> list:
    try:
        validation.check_config(config, check_files=True)
    except ValueError as error:
        return str(error).splitlines()
    return []


def test_the_field_defaults_to_the_default_directory_and_may_change_on_resume():
    from superfed_jax import config_schema

    entry = config_schema.field("compilation_cache")
    assert entry.default == "" and entry.resumable and entry.absent == ""
    assert config_lib.base_config().compilation_cache == ""


@pytest.mark.parametrize("value", ["", "off", "/some/new/dir", "relative/dir"])
def test_usable_values_pass(value):
    config = config_lib.base_config()
    config.compilation_cache = value
    assert not [p for p in _problems(config) if p.startswith("compilation_cache")]


@pytest.mark.parametrize("value", ["false", "None", "OFF", "0", "disabled"])
def test_words_for_off_are_refused_with_off_suggested(value):
    config = config_lib.base_config()
    config.compilation_cache = value
    assert [p for p in _problems(config) if p.startswith("compilation_cache")] == [
        f"compilation_cache={value!r}: allowed '' (the default directory), 'off' or a directory "
        "(did you mean 'off'?)"]


def test_a_file_is_refused_when_files_are_checked(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("x")
    config = config_lib.base_config()
    config.compilation_cache = str(path)
    assert [p for p in _problems(config) if p.startswith("compilation_cache")] == [
        f"compilation_cache={str(path)!r}: is not a directory; allowed '' (the default directory), 'off' or "
        "a directory"]
    assert cache.setting_problem(str(path), check_files=False) is None  # a tool reading no files
    assert cache.setting_problem(3) == ("compilation_cache=3: must be a string; allowed '' (the default "
                                        "directory), 'off' or a directory")


# ------------------------------------------------------------------------------- what JAX is told

# Enables the cache for argv[1], compiles one small program twice in a row inside `counting()` (the second
# time from a fresh jit, so only the persistent cache can serve it) and prints what JAX was told.
_PROBE = """
import json, sys
from superfed_jax import _compilation_cache as cache
directory = cache.enable(sys.argv[1])
import jax, jax.numpy as jnp
x = jax.ShapeDtypeStruct((3,), jnp.float32)  # lowering reads shapes only: nothing else compiles
counts = []
for offset in (1.0, 1.0):
    with cache.counting() as lookups:
        jax.jit(lambda x: jnp.sin(x) * offset).lower(x).compile()
    counts.append([lookups.requests, lookups.hits, lookups.note()])
print(json.dumps({"directory": directory, "jax_dir": jax.config.jax_compilation_cache_dir,
                  "enabled": jax.config.jax_enable_compilation_cache,
                  "min_seconds": jax.config.jax_persistent_cache_min_compile_time_secs, "counts": counts}))
"""


def _probe(setting: str, **environ) -> tuple[dict, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, **environ)
    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
                 "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "XLA_FLAGS"):
        if name not in environ:
            env.pop(name, None)
    result = subprocess.run([sys.executable, "-c", _PROBE, setting], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1]), result.stderr


def test_enable_points_jax_at_the_directory_and_a_second_compile_is_a_hit(tmp_path):
    # The default setting with a fake home: the directory is made, JAX told, every program written (even
    # one that compiles in milliseconds), so the second compile of the same program is a hit.
    seen, _ = _probe("", HOME=str(tmp_path / "home"), XDG_CACHE_HOME="")
    directory = str(tmp_path / "home" / ".cache" / "superfed_jax" / "xla")
    assert seen["directory"] == seen["jax_dir"] == directory
    assert seen["enabled"] and seen["min_seconds"] == cache.MIN_COMPILE_SECONDS == 0
    assert seen["counts"] == [[1, 0, ""], [1, 1, "loaded from the compilation cache"]]
    assert len(os.listdir(directory)) == 1
    # JAX's own threshold, given in the environment, is kept: this program is then never written.
    seen, _ = _probe(str(tmp_path / "mine"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1000")
    assert seen["directory"] == str(tmp_path / "mine") and seen["min_seconds"] == 1000
    assert seen["counts"] == [[1, 0, ""], [1, 0, ""]] and not os.listdir(tmp_path / "mine")


def test_off_switches_jax_s_cache_off_even_with_its_variable_set(tmp_path):
    seen, _ = _probe("off", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "env"))
    assert seen["directory"] is None and not seen["enabled"]
    assert seen["counts"] == [[0, 0, ""], [0, 0, ""]] and not os.path.exists(tmp_path / "env")


def test_a_directory_that_cannot_be_made_is_a_warning_and_no_cache(tmp_path):
    (tmp_path / "a_file").write_text("x")
    seen, stderr = _probe(str(tmp_path / "a_file" / "xla"))
    assert seen["directory"] is None and not seen["enabled"]
    assert f"warning: compilation cache off: cannot make {tmp_path / 'a_file' / 'xla'} (Not a directory); " \
           "every program is compiled anew" in stderr


def test_the_note_counts_the_programs_loaded():
    assert cache.Lookups(0, 0).note() == ""
    assert cache.Lookups(3, 0).note() == ""
    assert cache.Lookups(3, 3).note() == "loaded from the compilation cache"
    assert cache.Lookups(3, 1).note() == "1 of 3 programs loaded from the compilation cache"


# ------------------------------------------------------------------------------- a second run


def _smoke(workdir, cache_dir) -> subprocess.CompletedProcess:
    """A :smoke run (2 rounds) on one CPU device with its own cache directory (the config's, which comes
    before the session's JAX_COMPILATION_CACHE_DIR that conftest.py sets), with the run's own thresholds
    (not the session's)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    for name in ("XLA_FLAGS", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
                 "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "launch.py", "--config=configs/digits.py:smoke",
                           f"--config.compilation_cache={cache_dir}", f"--workdir={workdir}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _files(directory) -> set:
    return {os.path.join(folder, name) for folder, _, names in os.walk(directory) for name in names}


def test_a_second_run_in_a_fresh_workdir_loads_its_programs_from_the_cache(tmp_path):
    session = os.environ["JAX_COMPILATION_CACHE_DIR"]
    session_before = _files(session)
    first = _smoke(tmp_path / "first", tmp_path / "xla")
    assert first.returncode == 0, first.stderr[-3000:]
    written = _files(tmp_path / "xla")
    assert written  # the round and the evaluation at least
    [line] = [line for line in first.stderr.splitlines() if line.startswith("compiling the round")]
    assert line.endswith(" s"), line  # compiled: nothing said of the cache

    second = _smoke(tmp_path / "second", tmp_path / "xla")
    assert second.returncode == 0, second.stderr[-3000:]
    assert _files(tmp_path / "xla") == written  # nothing new compiled, so nothing new written
    [line] = [line for line in second.stderr.splitlines() if line.startswith("compiling the round")]
    assert line.endswith(" s (loaded from the compilation cache)"), line
    assert _files(session) == session_before  # the config's directory came first
    # The loaded programs compute what the compiled ones did.
    metrics = [(tmp_path / run / "metrics.jsonl").read_text() for run in ("first", "second")]
    assert metrics[0] == metrics[1]
