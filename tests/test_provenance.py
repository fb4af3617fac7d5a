"""superfed_jax.run.provenance: what provenance.json records, checked against git, the interpreter and
hand-written /proc/cpuinfo texts; and the report's provenance section."""
import importlib.metadata
import json
import os
import platform
import subprocess
import sys

import jax
import numpy as np
import pytest

from superfed_jax.reports import run_report
from superfed_jax.run import provenance

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]


def git(repo, *args):
    return subprocess.run([*GIT, "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository in tmp with one committed package directory `pkg` (nothing above tmp counts)."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "module.py").write_text("x = 1\n")
    git(root, "init", "-q")
    git(root, "add", "pkg")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_commit_is_the_repository_head_and_a_clean_tree_is_not_dirty(repo):
    state = provenance.git_state(str(repo / "pkg"))
    assert state["commit"] == git(repo, "rev-parse", "HEAD") and len(state["commit"]) == 40
    assert state["dirty"] is False and state["source"] == str(repo / "pkg")
    (repo / "pkg" / "module.py").write_text("x = 2\n")
    git(repo, "commit", "-q", "-am", "second")  # a new commit is followed
    assert provenance.git_state(str(repo / "pkg"))["commit"] == git(repo, "rev-parse", "HEAD")


def test_changed_or_staged_tracked_files_are_dirty_untracked_ones_are_not(repo):
    (repo / "notes.txt").write_text("untracked\n")
    assert provenance.git_state(str(repo / "pkg"))["dirty"] is False  # as `git describe --dirty`
    (repo / "pkg" / "module.py").write_text("x = 3\n")
    assert provenance.git_state(str(repo / "pkg"))["dirty"] is True
    git(repo, "add", "pkg/module.py")
    assert provenance.git_state(str(repo / "pkg"))["dirty"] is True  # staged, not committed
    git(repo, "commit", "-q", "-m", "third")
    assert provenance.git_state(str(repo / "pkg"))["dirty"] is False


def test_outside_a_repository_or_without_git_the_commit_is_unknown(tmp_path, monkeypatch, repo):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "plain").mkdir()
    unknown = {"commit": None, "dirty": None}
    assert {k: provenance.git_state(str(tmp_path / "plain"))[k] for k in unknown} == unknown
    (repo / "venv" / "site-packages").mkdir(parents=True)  # untracked, as an installed copy in a venv
    assert provenance.git_state(str(repo / "venv" / "site-packages"))["commit"] is None
    missing_git = provenance.git_state(str(repo / "pkg"), git=str(tmp_path / "no-such-git"))
    assert {k: missing_git[k] for k in unknown} == unknown
    assert provenance.git_state(str(tmp_path / "does-not-exist"))["commit"] is None


X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c avx2 fma avx512f avx512bw

processor\t: 1
model name\t: something else
flags\t\t: fpu
"""
ARM = """processor\t: 0
Features\t: fp asimd evtstrm aes crc32 asimddp sve
CPU part\t: 0xd40
"""


def test_cpu_model_and_simd_flags_from_the_first_processor_in_a_fixed_order():
    assert provenance.parse_cpuinfo(X86) == {
        "model": "AMD EPYC 7B13",
        "simd_flags": ["sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw"]}
    assert provenance.parse_cpuinfo(ARM) == {"model": "0xd40", "simd_flags": ["asimd", "asimddp", "sve"]}
    assert provenance.parse_cpuinfo("") == {"model": None, "simd_flags": []}


def test_unreadable_cpuinfo_is_unknown_not_an_error(tmp_path):
    info = provenance.cpu_info(str(tmp_path / "missing"))
    assert info["simd_flags"] is None and info["logical_cpus"] == os.cpu_count()


def test_a_session_records_versions_python_platform_devices_and_cpu(repo):
    session = provenance.collect(7, directory=str(repo / "pkg"))
    json.dumps(session)  # all of it is JSON
    assert session["from_round"] == 7 and session["started_at"].endswith("Z")
    assert session["git"]["commit"] == git(repo, "rev-parse", "HEAD")
    packages = session["packages"]
    assert packages["jax"] == jax.__version__ and packages["numpy"] == np.__version__
    for name in ("jaxlib", "flax", "optax", "orbax-checkpoint"):
        assert packages[name] == importlib.metadata.version(name)
    assert packages["superfed_jax"] == sys.modules["superfed_jax"].__version__
    assert session["python"]["version"] == "%d.%d.%d" % sys.version_info[:3]
    assert session["platform"]["machine"] == platform.machine()
    assert session["jax"] == {"backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
                              "device_count": jax.device_count(),
                              "local_device_count": jax.local_device_count(),
                              "process_count": jax.process_count()}
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            assert session["cpu"]["model"] == provenance.parse_cpuinfo(f.read())["model"]


def test_the_package_records_the_commit_of_its_own_checkout():
    source = provenance.source_directory()
    assert os.path.exists(os.path.join(source, "run", "provenance.py"))
    head = subprocess.run(["git", "-C", source, "rev-parse", "HEAD"], capture_output=True, text=True)
    expected = head.stdout.strip() if head.returncode == 0 else None
    assert provenance.git_state(source)["commit"] == expected


def test_a_resume_appends_a_session_and_drops_those_whose_rounds_were_rewound(tmp_path, capsys):
    def session(from_round):
        return {"from_round": from_round, "machine": f"m{from_round}"}

    path = tmp_path / "provenance.json"
    provenance.record_session(str(tmp_path), 0, session(0))
    provenance.record_session(str(tmp_path), 4, session(4))  # resumed after round 4, another machine
    assert [s["machine"] for s in json.loads(path.read_text())["sessions"]] == ["m0", "m4"]
    # Resumed again after round 2 (the checkpoint after 4 was damaged): the session from 4 kept nothing.
    provenance.record_session(str(tmp_path), 2, session(2))
    assert [s["machine"] for s in json.loads(path.read_text())["sessions"]] == ["m0", "m2"]
    provenance.record_session(str(tmp_path), 0, session(0))  # a fresh start keeps no earlier session
    assert [s["machine"] for s in json.loads(path.read_text())["sessions"]] == ["m0"]
    path.write_text("{not json")
    provenance.record_session(str(tmp_path), 3, session(3))  # a damaged file never stops a run
    assert [s["machine"] for s in json.loads(path.read_text())["sessions"]] == ["m3"]
    assert "provenance.json was unreadable" in capsys.readouterr().err
    assert not (tmp_path / "provenance.json.tmp").exists()


def test_the_report_has_a_row_per_session(tmp_path, repo):
    first = provenance.collect(0, directory=str(repo / "pkg"))
    second = {**first, "from_round": 5, "git": {**first["git"], "dirty": True}}
    (tmp_path / "provenance.json").write_text(json.dumps({"sessions": [first, second]}))
    lines = run_report.provenance_lines(str(tmp_path))
    rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    commit = first["git"]["commit"][:12]
    assert rows[0].startswith(f"| 0 | {first['started_at']} | `{commit}` | {jax.__version__} / ")
    assert rows[1].startswith(f"| 5 | {first['started_at']} | `{commit} (dirty)` |")
    assert all(f"{jax.device_count()} x {jax.devices()[0].device_kind}" in row for row in rows)
    assert run_report.provenance_lines(str(tmp_path / "none"))[2] == (
        "No readable provenance.json in the work directory.")
