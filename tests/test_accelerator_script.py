"""benchmarks/accelerator.sh: the run for a lent GPU or TPU, checked on the CPU so that it does not rot.

The `--tiny` run goes through the shell script, the driver (benchmarks/accelerator.py) and the suite
(benchmarks/suite.py) exactly as a lent machine would, at tiny sizes; the other tests check the driver's
own duties with a stand-in for the suite: a part over its limit is stopped with its children and keeps
the workloads it finished, the budget stops parts from starting, and missing modules or bad flags are one
`error:` line before anything runs.
"""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _driver():
    spec = importlib.util.spec_from_file_location("accelerator_driver",
                                                  os.path.join(ROOT, "benchmarks", "accelerator.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _environment(**extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHON=sys.executable, **extra)
    env.pop("XLA_FLAGS", None)  # one CPU device, as on a user's machine (conftest asks for 8)
    return env


# ------------------------------------------------------------------------------------ the tiny run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("accelerator") / "out"
    done = subprocess.run(["bash", "benchmarks/accelerator.sh", "--tiny", str(out)], cwd=ROOT,
                          env=_environment(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(out / "results.json") as f:
        report = json.load(f)
    return out, report, done.stdout


def test_tiny_run_covers_both_convolutions_dtypes_executions_and_families(tiny):
    _, report, _ = tiny
    assert report["mode"] == "tiny"
    ran = [p for p in report["parts"] if p["status"] == "ok"]
    assert len(ran) >= 2
    workloads = [w for p in ran for w in p["results"]["workloads"].values()]
    assert {w["dtype"] for w in workloads} == {"float32", "bfloat16"}
    assert {w["execution"] for w in workloads} == {"masked", "sliced"}
    assert {w["family"] for w in workloads} == {"ofa_resnet", "tcn"}
    assert {w["conv_impl"] for w in workloads if w["family"] == "ofa_resnet"} == {"xla", "im2col"}
    # Every part that did not run says why; under --tiny no part fails or runs out of time.
    for p in report["parts"]:
        assert p["status"] == "ok" or p["status"].startswith("skipped: not run under --tiny"), p


def test_tiny_run_records_positive_timings_at_tiny_sizes(tiny):
    _, report, _ = tiny
    for p in (p for p in report["parts"] if p["status"] == "ok"):
        results = p["results"]
        assert results["complete"] and results["space"] == "smoke", p["name"]
        assert "--space=smoke" in p["command"] and p["seconds"] > 0
        assert results["peak_matmul"]["flops_per_s"] > 0 and results["peak_flops_per_s"] > 0
        for name, w in results["workloads"].items():
            assert w["rounds_timed"] == 1 and len(w["round_times_s"]) == 1, name
            assert w["compile_s"] > 0 and w["s_per_round"] > 0 and w["examples_per_s"] > 0, name
            assert w["round_times_s"][0] == pytest.approx(w["s_per_round"])
            assert w["settings"]["clients_per_round"] == 2  # the tiny settings reached the suite
        if "tcn_client_steps" in results:
            for arch in results["tcn_client_steps"]["archs"].values():
                assert set(arch["seconds"]) == {"masked", "sliced", "dense"}
                assert min(arch["seconds"].values()) > 0


def test_tiny_run_writes_the_summary_the_raw_files_and_names_the_device(tiny):
    out, report, stdout = tiny
    device = report["environment"]["device_kind"]
    assert device and report["environment"]["backend"] == "cpu"
    summary = (out / "summary.md").read_text()
    assert f"Device: **{device}**" in summary and summary in stdout
    for p in report["parts"]:
        assert f"| {p['name']} | {p['status']} |" in summary
        if p["status"] != "ok":
            continue
        # The raw JSON is the suite's own file; the summary's rows are read from it.
        with open(out / p["json"]) as f:
            raw = json.load(f)
        assert raw == p["results"]
        assert (out / p["log"]).read_text().strip()
        for name, w in raw["workloads"].items():
            assert f"| {p['name']} | {name} | " in summary
            assert f" {w['dtype']} | {w['s_per_round']:.3f} | " in summary


# ------------------------------------------------------------------------------- the accelerator grid


def _suite_args(driver, part, mode):
    """The suite's parsed flags of one part in one mode, as the driver passes them."""
    if os.path.join(ROOT, "benchmarks") not in sys.path:
        sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import suite
    args = list(part.args) + list(driver.MODE_ARGS[mode])
    if mode == "tiny":
        args = [a for a in args if not a.startswith("--executions=")] + [f"--executions={part.tiny}"]
    return suite.parse_args(args + ["--out=x.json"])


def test_the_parts_cover_the_grid_the_issue_asks_for_and_parse_as_suite_flags():
    driver = _driver()
    grid = set()
    for part in driver.PARTS:
        if part.tiny:
            assert _suite_args(driver, part, "tiny").space == "smoke"
        args = _suite_args(driver, part, "accelerator")
        assert args.quick and args.space == "config" and args.skip.split(",")[-2:] == ["scaling", "padding"]
        for workload in args.only.split(","):
            conv = args.conv_impl if workload != "tcn" else "-"  # the TCN's convolutions are always XLA's
            grid |= {(workload, conv, args.dtype, e) for e in args.executions.split(",")}
    cifar = {(c, d, e) for w, c, d, e in grid if w == "cifar"}
    assert cifar == {(c, d, e) for c in ("xla", "im2col") for d in ("float32", "bfloat16")
                     for e in ("masked", "sliced")}
    assert {(d, e) for w, _, d, e in grid if w == "tcn"} == {(d, e) for d in ("float32", "bfloat16")
                                                             for e in ("masked", "sliced")}
    assert any(w == "digits" for w, *_ in grid)
    # The limits fit the default budget's purpose: the most wanted part alone fits, and no part's limit
    # reaches past 8 minutes.
    assert all(p.timeout_s + driver.STARTUP_S < driver.BUDGET_S["accelerator"] <= 480 for p in driver.PARTS)


# --------------------------------------------------------------------- the driver with a stand-in suite

# Stands in for benchmarks/suite.py: writes its --out JSON as the suite does after a workload, then
# behaves as FAKE_SUITE says: 'hang' (starts a child that records its pid, then waits forever) or
# 'sleep:S' (sleeps S seconds, then writes the complete JSON and exits 0).
FAKE_SUITE = r'''
import json, os, subprocess, sys, time
out = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--out="))
results = {"complete": False, "workloads": {"fake/masked": {}}, "peak_flops_per_s": 1.0,
           "peak_matmul": {"dtype": "float32", "n": 8}}
json.dump(results, open(out, "w"))
print("fake suite", sys.argv[1:], flush=True)
behaviour = os.environ["FAKE_SUITE"]
if "FAKE_PID" in os.environ:
    open(os.environ["FAKE_PID"], "w").write(str(os.getpid()))
if behaviour == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    open(os.environ["FAKE_CHILD_PID"], "w").write(str(child.pid))
    time.sleep(120)
time.sleep(float(behaviour.split(":")[1]))
json.dump(dict(results, complete=True, workloads={}), open(out, "w"))
'''


@pytest.fixture
def fake_suite(tmp_path, monkeypatch):
    driver = _driver()
    script = tmp_path / "fake_suite.py"
    script.write_text(FAKE_SUITE)
    monkeypatch.setattr(driver, "SUITE", str(script))
    (tmp_path / "out" / "parts").mkdir(parents=True)
    return driver, tmp_path / "out"


def _wait_until(condition, seconds):
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        time.sleep(0.2)
    return condition()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_a_part_over_its_limit_is_stopped_with_its_children_and_keeps_its_finished_workloads(
        fake_suite, tmp_path, monkeypatch):
    driver, out = fake_suite
    monkeypatch.setenv("FAKE_SUITE", "hang")
    monkeypatch.setenv("FAKE_CHILD_PID", str(tmp_path / "child.pid"))
    part = driver.Part("slow", ("--only=cifar",), 100)
    record = driver.run_part(part, "accelerator", str(out), driver.child_env(), limit_s=3)
    assert record["status"] == "timeout" and record["limit_s"] == 3
    assert 3 <= record["seconds"] < 30
    assert record["workloads_done"] == ["fake/masked"] and record["results"]["complete"] is False
    assert "fake suite" in record["log_tail"] and "--quick" in record["command"]
    child_pid = int((tmp_path / "child.pid").read_text())
    assert _wait_until(lambda: not _alive(child_pid), 20)  # signalled with its group; dying takes a moment


# The driver's main() in a process of its own, with the stand-in suite as its one part and a stand-in
# probe that reports a GPU, until it is killed.
DRIVER_RUNNING_A_PART = r"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("driver", sys.argv[1])
driver = importlib.util.module_from_spec(spec)
spec.loader.exec_module(driver)
driver.SUITE = sys.argv[2]
driver.PARTS = (driver.Part("slow", (), 100),)
modules = {**driver.REQUIRED_MODULES, **driver.OPTIONAL_MODULES}
driver.probe = lambda env: {"modules": {m: {"ok": True, "version": "1"} for m in modules}, "python": "3.12",
                            "cpu_count": 1, "backend": "gpu", "device_kind": "Fake GPU", "device_count": 1}
sys.exit(driver.main(["--budget_s=300", sys.argv[3]]))
"""


def _fake_gpu_environment(driver):
    modules = {**driver.REQUIRED_MODULES, **driver.OPTIONAL_MODULES}
    return {"modules": {m: {"ok": True, "version": "1"} for m in modules}, "python": "3.12.3", "cpu_count": 16,
            "backend": "gpu", "device_kind": "Fake GPU", "device_count": 1}


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_part_does_not_outlive_a_killed_driver(how, fake_suite, tmp_path, monkeypatch):
    driver, out = fake_suite
    monkeypatch.setenv("FAKE_SUITE", "hang")
    monkeypatch.setenv("FAKE_CHILD_PID", str(tmp_path / "child.pid"))
    monkeypatch.setenv("FAKE_PID", str(tmp_path / "suite.pid"))
    process = subprocess.Popen([sys.executable, "-c", DRIVER_RUNNING_A_PART,
                                os.path.join(ROOT, "benchmarks", "accelerator.py"), driver.SUITE, str(out)])
    assert _wait_until(lambda: (tmp_path / "child.pid").exists(), 60)
    suite_pid, child_pid = (int((tmp_path / f).read_text()) for f in ("suite.pid", "child.pid"))
    assert _alive(suite_pid) and _alive(child_pid)
    try:
        process.send_signal(getattr(signal, how))
        process.wait(timeout=30)
        assert _wait_until(lambda: not _alive(suite_pid), 20)  # SIGKILL: the part's death signal
        if how == "SIGTERM":  # the driver stops the part's process group: the suite's own children too
            assert process.returncode == 128 + signal.SIGTERM
            assert _wait_until(lambda: not _alive(child_pid), 20)
    finally:  # a killed driver cannot stop the suite's own children (the real parts start none)
        for pid in (suite_pid, child_pid):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_budget_stops_parts_from_starting_and_the_summary_says_how_to_run_them(fake_suite, monkeypatch,
                                                                                  capsys):
    driver, out = fake_suite
    monkeypatch.setenv("FAKE_SUITE", "sleep:3")
    monkeypatch.setattr(driver, "probe", lambda env: _fake_gpu_environment(driver))
    monkeypatch.setattr(driver, "PARTS", (driver.Part("first", (), 100), driver.Part("second", (), 100),
                                          driver.Part("third", (), 100)))
    monkeypatch.setattr(driver, "STARTUP_S", 0)
    # 32 s: the first part starts with 32 s left, ends 3 s later with under MIN_PART_S (30) left.
    assert driver.main([f"--budget_s={driver.MIN_PART_S + 2}", "--parts=first,second", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert [p["status"] for p in report["parts"]] == ["ok", report["parts"][1]["status"],
                                                      "skipped: not in --parts"]
    assert report["parts"][1]["status"].startswith("skipped: budget")
    assert report["wall_s"] < driver.MIN_PART_S
    summary = (out / "summary.md").read_text()
    assert "Fake GPU" in summary and "--parts=second OUTDIR" in summary


def test_a_missing_module_is_one_error_line_before_anything_runs(tmp_path):
    shadow = tmp_path / "shadow" / "ml_collections"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed on this machine')\n")
    out = tmp_path / "out"
    done = subprocess.run(["bash", "benchmarks/accelerator.sh", "--tiny", str(out)], cwd=ROOT,
                          env=_environment(PYTHONPATH=str(tmp_path / "shadow")), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: these Python modules do not import here: ml_collections (pip "
                                  "packages: ml_collections)")
    assert "--wheels=WHEELS" in done.stderr and done.stderr.rstrip().endswith("nothing was run")
    assert not out.exists()


def test_wheels_are_installed_where_the_parts_import_them(tmp_path):
    # A minimal pure-Python wheel, built by hand (what `pip download` would bring).
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    name = "accel_probe_mod"
    with zipfile.ZipFile(wheels / f"{name}-1.0-py3-none-any.whl", "w") as whl:
        whl.writestr(f"{name}.py", "VALUE = 42\n")
        whl.writestr(f"{name}-1.0.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        whl.writestr(f"{name}-1.0.dist-info/WHEEL",
                     "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{name}-1.0.dist-info/RECORD", "")
    driver = _driver()
    site = driver.install_wheels(str(wheels))
    done = subprocess.run([sys.executable, "-c", f"import {name}; print({name}.VALUE, {name}.__file__)"],
                          env=driver.child_env(site), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    value, path = done.stdout.split()
    assert value == "42" and path.startswith(site)


@pytest.mark.parametrize("argv,expected", [
    (["--parts=cifar_xla_float32,nope", "OUT"], "error: --parts: 'nope' is not a part; allowed: cifar_xla_float32,"),
    (["--budget_s=10", "OUT"], "error: --budget_s=10: must be at least"),
    (["--wheels=EMPTY", "OUT"], "error: --wheels="),
    ([], "error: the following arguments are required: outdir"),
])
def test_bad_arguments_are_one_error_line(argv, expected, tmp_path, capsys):
    argv = [a.replace("OUT", str(tmp_path / "out")).replace("EMPTY", str(tmp_path)) for a in argv]
    assert _driver().main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1, err
    assert err.rstrip().endswith("nothing was run")
    assert not (tmp_path / "out").exists()
