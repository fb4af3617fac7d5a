"""The quick selection's classifier (tests/conftest.py): which tests can start a process, and `heavy`.

The helper functions below are never called: the classifier only reads the names their code uses.
"""
import json

import conftest
import test_launch
import trained_run


def _runs_python_with_a_local_import():
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-c", "pass"])


def _calls_a_helper_that_runs_python():
    return _runs_python_with_a_local_import()


def _uses_the_shared_trained_run():
    return trained_run.loaded().round  # trains it in a subprocess on first use


def _pure(values):
    return sorted(values)


def test_functions_that_reach_a_process_are_found_through_helpers_and_modules():
    assert conftest.starts_process(_runs_python_with_a_local_import)
    assert conftest.starts_process(_calls_a_helper_that_runs_python)
    assert conftest.starts_process(_uses_the_shared_trained_run)
    assert conftest.starts_process(test_launch.launch)
    assert conftest.starts_process(trained_run.workdir)  # behind functools.lru_cache
    assert not conftest.starts_process(_pure)
    assert not conftest.starts_process(json.dumps)  # not the tests' code: not entered


def test_this_file_is_quick(request):
    marks = {m.name for m in request.node.iter_markers()}
    assert "subprocess" not in marks and "heavy" not in marks


def test_the_durations_file_decides_heavy(tmp_path):
    path = tmp_path / "durations.json"
    assert conftest.read_durations(str(path)) == {}  # no file: nothing is heavy
    path.write_text("[1, 2]")
    assert conftest.read_durations(str(path)) == {}
    path.write_text(json.dumps({"tests/test_x.py::test_y": 2.5}))
    assert conftest.read_durations(str(path)) == {"tests/test_x.py::test_y": 2.5}
