"""The run for a lent GPU or TPU: the benchmark suite at accelerator sizes, every figure in one folder.

    bash benchmarks/accelerator.sh [--tiny] [--wheels=DIR] [--parts=NAME,...] [--budget_s=450] OUTDIR

(`benchmarks/accelerator.sh` runs this file with `python3`, or `$PYTHON`.) It runs `benchmarks/suite.py`
once per part of `PARTS`, each in its own process with its own time limit, in the table's order (most
wanted first), and starts no part once less than `MIN_PART_S` of the whole budget is left (7.5 minutes
by default, and no part outlives it, so the run ends inside 8); what it skipped is named in the summary with the command that runs it
later. The grid: the CIFAR-shaped workload (paper space, Dirichlet alpha 0.1, P 8 in one vmapped chunk of
batch 64) for `model.conv_impl` xla and im2col x `model.dtype` float32 and bfloat16 (compute dtype of the
convolutions and matmuls; params stay float32), each part timing both executions (`model.execution`
masked and sliced); the elastic TCN on synthetic Shakespeare-shaped data (715 clients) in bfloat16 and
float32 with its client-step line; and the digits round against a Python loop of a jitted step.

OUTDIR receives:

* `summary.md`: the machine, one row per part (status, seconds) and the figures as markdown tables, to
  paste into benchmarks/RESULTS.md;
* `results.json`: everything: the machine and versions, and per part its command, status, seconds and
  the suite's full JSON (`results`), partial if the part was stopped at its limit;
* `parts/NAME.json` and `parts/NAME.log`: each part's raw suite JSON and output.

`--tiny` runs the same driver and suite code at tiny sizes on whatever JAX finds (CPU in CI: the test
tests/test_accelerator_script.py runs it so the script does not rot): the family's smoke space
(`suite.py --space=smoke`), a handful of clients and one timed round, and only the parts marked for it,
each with one execution, chosen so that both convolutions, both dtypes, both executions and both
families still run. Its figures mean nothing; compiling the rounds is most of its time.

Before starting anything the driver imports what the suite needs in a child process and stops with one
line naming what is missing (a machine without network takes wheels from `--wheels=DIR`, installed into a
temporary folder with pip's --no-index); then it names the device JAX sees and, outside `--tiny`, refuses
to run on a CPU. Compile times are cold: JAX's persistent compilation cache is switched off for the parts.
"""
import argparse
import atexit
import dataclasses
import datetime
import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SUITE = os.path.join(HERE, "suite.py")

# Modules the suite imports (top-level name -> pip package), and those only some workloads use.
REQUIRED_MODULES = {"numpy": "numpy", "jax": "jax", "jaxlib": "jaxlib", "flax": "flax", "optax": "optax",
                    "ml_collections": "ml_collections", "absl": "absl-py", "yaml": "PyYAML"}
OPTIONAL_MODULES = {"h5py": "h5py", "sklearn": "scikit-learn"}  # the TCN's data; the digits data


@dataclasses.dataclass(frozen=True)
class Part:
    """One suite process. `args`: its suite flags in both modes; `timeout_s`: its limit at accelerator
    sizes (estimated: startup, compiling each round, warm-up and timed rounds); `needs`: optional modules
    it imports; `tiny`: the `--executions` it runs under --tiny, '' = not run under --tiny (another part
    covers its code path with other flag values)."""
    name: str
    args: tuple
    timeout_s: int
    needs: tuple = ()
    tiny: str = ""


# At accelerator sizes (`suite.py --quick` on an accelerator: CIFAR K 20, P 8, chunk 8, batch 64, 64
# images a client, 3 rounds; TCN 715 clients, 3 rounds). The time goes to compiling: on the 2-core CPU a
# masked round of the paper space compiled in 12-15 s at light load and a sliced one about 3 times that
# (benchmarks/suite_cpu_executions.json, scaled from a load of 12); XLA:GPU adds autotuning. So a CIFAR
# part is estimated at 10 s start + 20 s + 50 s compiling + 10 s of rounds, about 90 s; its limit leaves
# margin. The loop comparison (one more jitted step and its loop, 20 s more) runs in the first part only.
# Under --tiny three parts run, one execution each: cifar_xla_float32 sliced, tcn_bfloat16 masked and
# cifar_im2col_bfloat16 masked, so each convolution, dtype, execution and family runs once (a round takes
# 15-45 s to compile on the busy 2-core CPU whatever its size, so the whole grid would take many minutes).
CIFAR = ("--only=cifar", "--cifar_alphas=0.1", "--executions=masked,sliced")
PARTS = (
    Part("cifar_xla_float32", CIFAR + ("--conv_impl=xla", "--dtype=float32", "--skip=scaling,padding"),
         150, tiny="sliced"),
    Part("cifar_xla_bfloat16", CIFAR + ("--conv_impl=xla", "--dtype=bfloat16", "--skip=loop,scaling,padding"),
         100),
    Part("tcn_bfloat16", ("--only=tcn", "--executions=masked,sliced", "--dtype=bfloat16",
                          "--skip=scaling,padding"), 100, needs=("h5py",), tiny="masked"),
    Part("cifar_im2col_float32", CIFAR + ("--conv_impl=im2col", "--dtype=float32",
                                          "--skip=loop,scaling,padding"), 100),
    Part("cifar_im2col_bfloat16", CIFAR + ("--conv_impl=im2col", "--dtype=bfloat16",
                                           "--skip=loop,scaling,padding"), 100, tiny="masked"),
    Part("tcn_float32", ("--only=tcn", "--executions=masked,sliced", "--dtype=float32",
                         "--skip=scaling,padding"), 100, needs=("h5py",)),
    Part("digits_xla_float32", ("--only=digits", "--executions=masked,sliced", "--conv_impl=xla",
                                "--dtype=float32", "--skip=scaling,padding"), 80, needs=("sklearn",)),
)
MODE_ARGS = {
    "accelerator": ("--quick",),
    # Tiny: the smoke spaces, 2 clients a round in one vmapped chunk (the accelerator layout), one round.
    "tiny": ("--space=smoke", "--rounds=1", "--client_layout=vmap", "--matmul_n=256",
             '--cifar={"num_clients": 2, "clients_per_round": 2, "chunk_size": 2, "batch_size": 4, '
             '"examples_per_client": 8}',
             '--tcn={"num_clients": 8, "clients_per_round": 2, "max_windows": 4, "step_batch": 4, '
             '"step_repeats": 1}'),
}
# Under --tiny, per part and in all: generous, since a busy 2-core machine compiles slowly (a part took
# 50-90 s at a load average of 6); a CI run should fail on a broken script, not on a busy machine.
TINY_TIMEOUT_S = 400
BUDGET_S = {"accelerator": 450, "tiny": 1200}
STARTUP_S = 60  # the environment probe's limit (importing JAX and starting its backend)
MIN_PART_S = 30  # a part is not started with less than this left of the budget

# Printed by the probe child: the modules' import results, then (if every required one imported) the device.
PROBE = r"""
import importlib, json, os, platform, sys
modules = json.loads(sys.argv[1])
found = {}
for name in modules:
    try:
        module = importlib.import_module(name)
        found[name] = {"ok": True, "version": str(getattr(module, "__version__", ""))}
    except Exception as e:  # any import failure is reported, whatever its kind
        found[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}
out = {"modules": found, "python": platform.python_version(), "executable": sys.executable,
       "cpu_count": os.cpu_count()}
if all(found[name]["ok"] for name in json.loads(sys.argv[2])):
    import jax
    devices = jax.devices()
    out.update(backend=jax.default_backend(), device_kind=devices[0].device_kind,
               device_count=len(devices), devices=[str(d) for d in devices])
print("PROBE " + json.dumps(out))
"""


class UserError(Exception):
    """Bad input or an unfit machine: printed as one `error: ...` line, exit status 2, nothing run."""


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line `error: ...` messages (no usage block)."""

    def error(self, message):
        raise UserError(f"{message}; see --help")


def child_env(site: str = "") -> dict:
    """The parts' environment: the repository (and installed wheels) importable, output unbuffered, and
    no persistent compilation cache, so every compile time is a cold compile."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))}
    paths = [p for p in (site, ROOT, env.get("PYTHONPATH", "")) if p]
    env.update(PYTHONPATH=os.pathsep.join(paths), PYTHONUNBUFFERED="1", JAX_ENABLE_COMPILATION_CACHE="false")
    return env


def install_wheels(folder: str) -> str:
    """Installs every wheel of `folder` into a new temporary folder (no index, no dependencies, as a
    machine without network needs) and returns that folder, to put on PYTHONPATH."""
    wheels = sorted(glob.glob(os.path.join(folder, "*.whl")))
    if not wheels:
        raise UserError(f"--wheels={folder}: no .whl files there; give a folder of wheels")
    site = tempfile.mkdtemp(prefix="accelerator_site_")
    atexit.register(shutil.rmtree, site, True)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                           "--no-compile", "--target", site, *wheels], capture_output=True, text=True)
    if done.returncode:
        raise UserError(f"--wheels={folder}: pip could not install them: "
                         f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return site


def probe(env: dict) -> dict:
    """Imports the suite's modules in a child process and, if they import, names the device JAX sees."""
    modules = {**REQUIRED_MODULES, **OPTIONAL_MODULES}
    try:
        done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(modules)),
                               json.dumps(list(REQUIRED_MODULES))], env=env, capture_output=True, text=True,
                              timeout=STARTUP_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"importing JAX and starting its backend took over {STARTUP_S} s")
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    if done.returncode or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise UserError(f"the environment probe failed ({sys.executable}): {tail[0]}")
    return json.loads(lines[-1][len("PROBE "):])


def missing_message(missing: list, python: str) -> str:
    """The one-line error for required modules that do not import, with how to bring them."""
    packages = " ".join(REQUIRED_MODULES[m] for m in missing)
    return (f"these Python modules do not import here: {', '.join(missing)} (pip packages: "
            f"{packages}). Install them, or on a machine without network download "
            f"their wheels elsewhere (`python -m pip download --no-deps --only-binary=:all: "
            f"--python-version {'.'.join(python.split('.')[:2])} -d WHEELS {packages}`, adding --platform "
            f"for compiled ones) and rerun with --wheels=WHEELS")


def _part_process_setup() -> None:
    """Run in a part's process before the suite starts: a session of its own, so that a timeout stops
    its children with it, and (Linux) SIGKILL when the driver dies, so that no part outlives a run that was
    killed (its own session would otherwise keep it running, holding the accelerator)."""
    os.setsid()
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the driver's SIGTERM handler still stops the part
        pass


def _stop(proc: subprocess.Popen) -> None:
    """Stops a part's whole process group: SIGTERM, then SIGKILL after 10 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:  # already gone
        proc.wait()


def run_part(part: Part, mode: str, outdir: str, env: dict, limit_s: float) -> dict:
    """Runs one part's suite process under `limit_s` (stopped with its whole process group after it) and
    returns its record, with the suite's JSON (complete, or the workloads it finished) under 'results'."""
    json_path = os.path.join(outdir, "parts", f"{part.name}.json")
    log_path = os.path.join(outdir, "parts", f"{part.name}.log")
    args = list(part.args) + list(MODE_ARGS[mode])
    if mode == "tiny":
        args = [a for a in args if not a.startswith("--executions=")] + [f"--executions={part.tiny}"]
    command = [sys.executable, SUITE, *args, f"--out={json_path}"]
    record = {"name": part.name, "command": shlex.join(["python", os.path.relpath(SUITE, ROOT), *args]),
              "limit_s": round(limit_s), "json": os.path.relpath(json_path, outdir),
              "log": os.path.relpath(log_path, outdir)}
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                preexec_fn=_part_process_setup)
        try:
            returncode = proc.wait(timeout=limit_s)
            status = "ok" if returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            _stop(proc)
            returncode, status = proc.returncode, "timeout"
        finally:  # the driver stopped (SIGTERM, Ctrl-C): the part stops with it
            if proc.returncode is None:
                _stop(proc)
    record.update(status=status, returncode=returncode, seconds=round(time.perf_counter() - start, 1))
    results = None
    if os.path.exists(json_path):
        with open(json_path) as f:
            results = json.load(f)
    record["results"] = results
    record["workloads_done"] = sorted((results or {}).get("workloads", {}))
    if status == "ok" and not (results or {}).get("complete"):
        record["status"] = "failed"  # exited 0 without its final JSON: not a result to record
    if record["status"] != "ok":
        with open(log_path) as f:
            record["log_tail"] = f.read()[-3000:]
    return record


# ------------------------------------------------------------------------------------------- summary


def _fmt(x, spec: str) -> str:
    return "" if x is None else format(x, spec)


def summary_markdown(report: dict) -> str:
    """The human-readable summary: machine, parts, and the figures as markdown tables."""
    env = report["environment"]
    versions = ", ".join(f"{m} {env['modules'][m]['version']}" for m in ("jax", "jaxlib", "flax", "optax")
                         if env["modules"].get(m, {}).get("ok"))
    lines = [f"# Accelerator run ({report['mode']}), {report['started']}", "",
             f"Device: **{env.get('device_kind', '?')}** x {env.get('device_count', '?')} "
             f"(backend {env.get('backend', '?')}); Python {env['python']}, {versions}; "
             f"{env['cpu_count']} CPU cores. Wall time {report['wall_s']:.0f} s of a {report['budget_s']} s "
             "budget.", ""]
    if report["mode"] == "tiny":
        lines += ["**Tiny mode: smoke spaces, a handful of clients, one round. The figures only show that "
                  "the code runs.**", ""]
    lines += ["| part | status | seconds | limit s | workloads done |", "|---|---|---|---|---|"]
    for p in report["parts"]:
        lines.append(f"| {p['name']} | {p['status']} | {_fmt(p.get('seconds'), '.0f')} | "
                     f"{_fmt(p.get('limit_s'), 'd')} | {', '.join(p.get('workloads_done', []))} |")
    skipped = [p for p in report["parts"] if p["status"].startswith("skipped: budget")]
    if skipped:
        lines += ["", "Not run for lack of time; on a later lease: `bash benchmarks/accelerator.sh "
                  f"--parts={','.join(p['name'] for p in skipped)} OUTDIR`."]
    lines += ["", "| part | workload / execution | conv | dtype | s / round | examples/s | tokens/s | "
              "useful TFLOP/s | useful % of peak | computed / useful MACs | compile s | peak memory GB | "
              "loop / compiled |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    peaks = []
    for p in report["parts"]:
        r = p.get("results")
        if not r:
            continue
        peaks.append(f"{p['name']}: {r['peak_flops_per_s'] / 1e12:.1f} TFLOP/s "
                     f"({r['peak_matmul']['dtype']}, n={r['peak_matmul']['n']})")
        for name, w in r["workloads"].items():
            loop = w.get("loop_over_compiled")
            lines.append(
                f"| {p['name']} | {name} | {w['conv_impl'] if w['family'] != 'tcn' else '-'} | {w['dtype']} | "
                f"{w['s_per_round']:.3f} | {w['examples_per_s']:,.0f} | {_fmt(w.get('tokens_per_s'), ',.0f')} | "
                f"{2 * w['useful_macs_per_s'] / 1e12:.2f} | {100 * w['useful_fraction_of_peak']:.1f} | "
                f"{w['computed_over_useful_macs']:.2f} | {w['compile_s']:.1f} | "
                f"{w['memory']['peak_bytes'] / 1e9:.2f} | "
                f"{', '.join(f'{k} {v:.2f}x' for k, v in loop.items()) if loop else ''} |")
    lines += ["", "Peak matmul (the better of each part's start and end): " + "; ".join(peaks) + "."]
    for p in report["parts"]:
        steps = (p.get("results") or {}).get("tcn_client_steps")
        if steps:
            lines += ["", f"TCN client step, {p['name']} (batch {steps['batch']} windows of {steps['window']} "
                      f"tokens, median of {steps['repeats']}), ms masked / sliced / dense:"]
            for arch, s in steps["archs"].items():
                ms = s["seconds"]
                lines.append(f"- {arch}: {1e3 * ms['masked']:.2f} / {1e3 * ms['sliced']:.2f} / "
                             f"{1e3 * ms['dense']:.2f}")
    lines += ["", "Columns: suite.py's (benchmarks/RESULTS.md): useful = the trained archs' MACs x 3 on real "
              "examples; peak memory = the allocator's peak_bytes_in_use (process-wide, so a part's second "
              "workload shows the larger of the two) on an accelerator, XLA's analysis on CPU. Raw numbers: "
              "results.json and parts/."]
    return "\n".join(lines) + "\n"


def write_report(report: dict, outdir: str) -> str:
    """Writes results.json and summary.md (each replaced in one rename); returns the summary."""
    summary = summary_markdown(report)
    for name, text in (("results.json", json.dumps(report, indent=2)), ("summary.md", summary)):
        path = os.path.join(outdir, name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    return summary


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv=None):
    """The command line of the module docstring."""
    parser = _Parser(description=__doc__.split("\n")[0])
    parser.add_argument("outdir", help="folder for summary.md, results.json and parts/ (created)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny sizes on any backend (CPU in CI): checks the script still runs")
    parser.add_argument("--parts", default="", help="comma list of part names to run (default: all, in "
                        "order); names: " + ", ".join(p.name for p in PARTS))
    parser.add_argument("--budget_s", type=int, default=0,
                        help="the whole run's time limit in seconds (default 450, inside 8 minutes; "
                             "under --tiny 1200)")
    parser.add_argument("--wheels", default="", help="folder of .whl files to install (no index, into a "
                        "temporary folder) before running, for missing modules on a machine without network")
    args = parser.parse_args(argv)
    names = [p.name for p in PARTS]
    for name in filter(None, args.parts.split(",")):
        if name not in names:
            raise UserError(f"--parts: {name!r} is not a part; allowed: {', '.join(names)}")
    args.budget_s = args.budget_s or BUDGET_S["tiny" if args.tiny else "accelerator"]
    if args.budget_s < MIN_PART_S + STARTUP_S:
        raise UserError(f"--budget_s={args.budget_s}: must be at least {MIN_PART_S + STARTUP_S} (the probe "
                        "and one part)")
    return args


def main(argv=None) -> int:
    """`run`, with a user error printed as one line (exit status 2, nothing run)."""
    # SIGTERM (a time limit around the whole run) ends the driver through SystemExit, so the running
    # part is stopped on the way out (run_part's `finally`).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        return run(parse_args(argv))
    except UserError as e:
        print(f"error: {e}; nothing was run", file=sys.stderr)
        return 2


def run(args) -> int:
    """Runs the probe and the parts, writes OUTDIR; returns the exit status (0 if every part that was
    started ended ok, 1 otherwise)."""
    t0 = time.perf_counter()
    deadline = t0 + args.budget_s
    mode = "tiny" if args.tiny else "accelerator"
    env = child_env(install_wheels(args.wheels) if args.wheels else "")
    environment = probe(env)
    missing = [m for m in REQUIRED_MODULES if not environment["modules"][m]["ok"]]
    if missing:
        raise UserError(missing_message(missing, environment["python"]))
    print(f"device: {environment['device_kind']} x {environment['device_count']} "
          f"(backend {environment['backend']}), jax {environment['modules']['jax']['version']}", flush=True)
    if mode == "accelerator" and environment["backend"] == "cpu":
        raise UserError("JAX sees no accelerator here (backend 'cpu'; is PYTHON the interpreter with the "
                        "device's JAX?); the accelerator sizes would take hours on a CPU. --tiny checks the "
                        "script on a CPU")
    os.makedirs(os.path.join(args.outdir, "parts"), exist_ok=True)
    chosen = set(filter(None, args.parts.split(","))) or {p.name for p in PARTS}
    report = {"mode": mode, "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "budget_s": args.budget_s, "environment": environment, "parts": []}
    for part in PARTS:
        record = {"name": part.name}
        absent = [m for m in part.needs if not environment["modules"][m]["ok"]]
        left = deadline - time.perf_counter()
        if part.name not in chosen:
            record["status"] = "skipped: not in --parts"
        elif mode == "tiny" and not part.tiny:
            record["status"] = "skipped: not run under --tiny (another part runs its code)"
        elif absent:
            record["status"] = (f"skipped: missing module {', '.join(absent)} (pip "
                                f"{' '.join(OPTIONAL_MODULES[m] for m in absent)}; see --wheels)")
        elif left < MIN_PART_S:
            record["status"] = f"skipped: budget ({left:.0f} s left)"
        else:
            limit = min(part.timeout_s if mode == "accelerator" else TINY_TIMEOUT_S, left)
            print(f"[{time.perf_counter() - t0:5.0f} s] {part.name} (limit {limit:.0f} s) ...", flush=True)
            record = run_part(part, mode, args.outdir, env, limit)
            print(f"[{time.perf_counter() - t0:5.0f} s] {part.name}: {record['status']} in "
                  f"{record['seconds']:.0f} s; workloads {', '.join(record['workloads_done']) or 'none'}",
                  flush=True)
        report["parts"].append(record)
        # After every part: a run killed from outside still leaves what it measured, summarised.
        report["wall_s"] = round(time.perf_counter() - t0, 1)
        summary = write_report(report, args.outdir)
    print("\n" + summary)
    print(f"wrote {os.path.join(args.outdir, 'summary.md')} and results.json")
    ran = [p for p in report["parts"] if "returncode" in p]
    return 0 if ran and all(p["status"] == "ok" for p in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
