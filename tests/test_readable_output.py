"""Readable output: the units of `superfed_jax._readable`, each small command's summary against strings
worked out by hand, its `--json` carrying the exact values, `--help` listing a command's own flags, and the
report's heading naming the run. The commands run in this process (`console()` with `sys.argv` set):
`_cli.run` removes a command's flags when it ends, so one test process can run them all."""
import json
import os
import sys

import pytest

import test_report as R
from superfed_jax import _readable
from superfed_jax.posttrain import evaluate_export
from superfed_jax.posttrain import export
from superfed_jax.posttrain import search
from superfed_jax.reports import arch_size
from superfed_jax.reports import cli as report_cli
from superfed_jax.run import memory

# ------------------------------------------------------------------------------------------- units


@pytest.mark.parametrize("n, text", [
    (0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1024, "1 KiB"), (1536, "1.5 KiB"),
    (2**30, "1 GiB"), (286759720, "273.5 MiB"),      # 286759720 / 2**20 = 273.475...
    (25939541304, "24.16 GiB"),                      # 25939541304 / 2**30 = 24.158...
    (1024 * 1023.99, "1 MiB"),                       # 1023.99 KiB would print as '1024 KiB'
    (3 * 2**40, "3 TiB"),
])
def test_binary_bytes(n, text):
    assert _readable.binary_bytes(n) == text


@pytest.mark.parametrize("value, text", [
    (364544, "364.5 kMACs"), (1657088, "1.657 MMACs"), (4.043e9, "4.043 GMACs"), (12, "12 MACs"),
    (0.5, "0.5 MACs"),
])
def test_si(value, text):
    assert _readable.si(value, "MACs") == text


def test_count_and_fraction():
    assert _readable.count(41130) == "41,130" and _readable.count(7) == "7"
    assert _readable.fraction(0.9555555582046509) == "0.9556"
    assert _readable.fraction(1.0) == "1.0000"
    assert _readable.fraction(None) == _readable.fraction(float("nan")) == "n/a"


def test_path_is_relative_under_the_current_directory_only(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert _readable.path(str(tmp_path / "here" / "runs" / "a")) == os.path.join("runs", "a")
    assert _readable.path(str(tmp_path / "here")) == "."
    assert _readable.path("runs/a/../b") == os.path.join("runs", "b")
    # A sibling that shares the directory's name as a prefix is not under it.
    assert _readable.path(str(tmp_path / "here_too")) == str(tmp_path / "here_too")
    assert _readable.path(str(tmp_path)) == str(tmp_path)


def test_json_line_keeps_every_digit():
    line = _readable.json_line({"accuracy": 0.9555555582046509, "bytes": 25939541304})
    assert "\n" not in line and json.loads(line) == {"accuracy": 0.9555555582046509, "bytes": 25939541304}


# ------------------------------------------------------------------------------- the commands


def run_console(module, argv, monkeypatch, capsys):
    """(exit status, stdout, stderr) of the module's console script run with `argv` in this process."""
    monkeypatch.setattr(sys, "argv", [f"superfed-{module.__name__}", *argv])
    with pytest.raises(SystemExit) as exited:
        module.console()
    captured = capsys.readouterr()
    return exited.value.code or 0, captured.out, captured.err


# Round numbers of bytes, so that every part's text is known: a KiB per params-sized copy, 3 MiB of
# activations per client, 5 GiB of training data.
ESTIMATE = {
    "total_bytes": 5375011840, "fixed_bytes": 5368714240, "per_client_bytes": 3148800, "clients_in_flight": 2,
    "chunk_size": 4, "params_bytes": 1024, "data_bytes": 5 * 2**30, "activation_elements_per_example": 0,
    "fixed": {"state_params": 1024, "aggregation_sums": 1024, "new_params": 1024, "server_optimizer_state": 2048,
              "data": 5 * 2**30},
    "per_client": {"params": 1024, "gradients": 1024, "updated_params": 1024, "optimizer_state": 0,
                   "compute_dtype_params": 0, "activations": 3 * 2**20},
    "available_bytes": 8 * 2**30, "suggested_chunk_size": 4,
}


def test_memory_summary_in_binary_units():
    part = "    {:<27}  {}".format  # 27: the longest part name, 'params in the compute dtype'
    assert memory.summary_text(ESTIMATE).splitlines() == [
        # 5375011840 / 2**30 = 5.00587; 3148800 / 2**20 = 3.00293; 5368714240 / 2**30 = 5.0000048
        "one round needs about 5.006 GiB per device; 8 GiB available: fits",
        "  per client: 3.003 MiB x 2 in flight per device (fl.chunk_size=4)",
        part("params", "1 KiB"), part("gradients", "1 KiB"), part("updated params", "1 KiB"),
        part("optimizer state", "0 B"), part("params in the compute dtype", "0 B"),
        part("activations of a batch", "3 MiB"),
        "  fixed: 5 GiB",
        part("server params", "1 KiB"), part("aggregation sums", "1 KiB"), part("new params", "1 KiB"),
        part("server optimizer state", "2 KiB"), part("training data", "5 GiB"),
        "largest fl.chunk_size that fits: 4",
    ]
    tight = {**ESTIMATE, "available_bytes": 2**30, "suggested_chunk_size": None}
    lines = memory.summary_text(tight).splitlines()
    assert lines[0].endswith("1 GiB available: does not fit")
    assert lines[-1].startswith("even fl.chunk_size=1 does not fit")


def test_memory_command_summary_and_json(monkeypatch, capsys):
    argv = ["--config=digits:smoke", "--available_gib=1"]
    status, out, err = run_console(memory, argv + ["--json"], monkeypatch, capsys)
    assert status == 0, err
    estimate = json.loads(out)
    assert estimate["available_bytes"] == 2**30 and isinstance(estimate["total_bytes"], int)
    assert estimate["total_bytes"] == estimate["fixed_bytes"] + (estimate["clients_in_flight"]
                                                                 * estimate["per_client_bytes"])
    status, out, err = run_console(memory, argv, monkeypatch, capsys)  # the same flags, run again
    assert status == 0, err
    assert out == memory.summary_text(estimate) + "\n"
    assert "1 GiB available" in out and "bytes" not in out


def test_cost_summary_one_line_per_arch():
    summaries = [{"name": "smallest", "arch": {"d": [0], "e": 0.1}, "macs": 364544, "params": 41130},
                 {"name": "largest", "arch": {"d": [1], "e": 0.25}, "macs": 1657088, "params": 181530}]
    assert arch_size.summary_text(summaries).splitlines() == [
        "forward MACs per image and params of each arch:",
        '  smallest  364.5 kMACs   41,130 params  {"d":[0],"e":0.1}',
        '  largest   1.657 MMACs  181,530 params  {"d":[1],"e":0.25}',
    ]
    one = [{"arch": {"d": 2, "e": 1.0}, "macs": 14_640_000, "params": 14_659_600}]  # --arch: no name
    assert arch_size.summary_text(one, "token").splitlines() == [
        "forward MACs per token and params of each arch:",
        '  arch  14.64 MMACs  14,659,600 params  {"d":2,"e":1.0}',
    ]


def test_cost_command_summary_and_json(monkeypatch, capsys):
    status, out, err = run_console(arch_size, ["--config=digits", "--json"], monkeypatch, capsys)
    assert status == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["name"] for row in rows] == ["smallest", "small", "medium", "largest"]
    assert all(isinstance(row["macs"], int) and row["gmacs"] == row["macs"] / 1e9 for row in rows)
    status, out, err = run_console(arch_size, ["--config=digits"], monkeypatch, capsys)
    assert status == 0, err
    assert out == arch_size.summary_text(rows) + "\n"


EXPORTED = {"arch": {"d": [0, 0], "e": [0.18, 0.1]}, "macs": 389504, "params": 18630}


def test_export_summary_and_json(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(export, "export_run", lambda workdir, arch, out, overwrite: EXPORTED)
    argv = ["--workdir=run", "--arch=search:macs=1e6", "--out=sub"]
    status, out, err = run_console(export, argv, monkeypatch, capsys)
    assert status == 0, err
    assert out == 'exported {"d":[0,0],"e":[0.18,0.1]} to sub: 389.5 kMACs, 18,630 params\n'
    status, out, err = run_console(export, argv + ["--json"], monkeypatch, capsys)
    assert status == 0, err
    assert json.loads(out) == {"out": str(tmp_path / "sub"), **EXPORTED}


def test_evaluate_summary_and_json(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    report = {"model": str(tmp_path / "sub"), "data": "digits", "split": "test", "examples": 1360,
              "accuracy": 0.9555555582046509, "loss": 0.14999997}
    monkeypatch.setattr(evaluate_export, "evaluate_export", lambda *args: report)
    status, out, err = run_console(evaluate_export, ["--model=sub"], monkeypatch, capsys)
    assert status == 0, err
    assert out == "sub on digits test (1,360 examples): accuracy 0.9556, loss 0.1500\n"
    status, out, err = run_console(evaluate_export, ["--model=sub", "--json"], monkeypatch, capsys)
    assert status == 0, err
    assert json.loads(out) == report  # 0.9555555582046509, every digit
    language = {**report, "perplexity": 12.3456}
    assert evaluate_export.summary_text(language).endswith("loss 0.1500, perplexity 12.35")


def test_search_summary_and_json(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    best = {"arch": {"d": [0, 0], "e": 0.1}, "macs": 389504, "params": 18630,
            "val_accuracy": 0.1041666641831398, "test_accuracy": 0.10277777910232544}
    report = {"results": [{"budget": "macs=1e6", "best": best, "front": [best, best], "archs_evaluated": 10}]}
    monkeypatch.setattr(search, "search_run", lambda *args: report)
    argv = ["--workdir=run", "--budget=macs=1e6", "--out=found.json"]
    status, out, err = run_console(search, argv, monkeypatch, capsys)
    assert status == 0, err
    lines = out.splitlines()
    # MACs in millions to 2 decimals, the accuracies to 4, the front's size, then the arch and the file.
    assert lines[1].split() == ["macs=1e6", "0.39", "18,630", "-", "0.1042", "0.1028", "2"]
    assert lines[2:] == ['  {"d": [0, 0], "e": 0.1}', "wrote found.json"]
    status, out, err = run_console(search, argv + ["--json"], monkeypatch, capsys)
    assert status == 0, err
    assert json.loads(out) == {"out": str(tmp_path / "found.json"), "report": None,
                               "results": [{"budget": "macs=1e6", "best": best, "front_size": 2,
                                            "archs_evaluated": 10}]}
    assert json.load(open(tmp_path / "found.json")) == report


@pytest.mark.parametrize("module, flag", [(memory, "--available_gib"), (arch_size, "--arch"),
                                          (export, "--overwrite"), (evaluate_export, "--split"),
                                          (search, "--budget")])
def test_help_lists_the_command_s_own_flags(module, flag, monkeypatch, capsys):
    # absl's --help lists the flags of __main__, none for a console script.
    status, out, err = run_console(module, ["--help"], monkeypatch, capsys)
    assert (status, err) == (0, "")
    assert out.startswith("superfed-") and "usage: superfed-" in out
    assert f"\n  {flag}" in out and "\n  --json\n" in out


# ---------------------------------------------------------------------------------------- the report


def test_report_heading_names_the_run_and_the_command_prints_relative_paths(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cost = R.make_cost(2_000_000, 6_000_000_000, 1_500_000, ratios=(3.5, 3.25, 3.0))
    R.make_workdir(tmp_path / "runs" / "digits_smoke", R.make_config(), R.SINGLE_RECORDS, cost)
    assert report_cli.main(["runs/digits_smoke/"]) == 0
    assert capsys.readouterr().out == ("wrote runs/digits_smoke/report.md and runs/digits_smoke/pareto.png\n")
    lines = open(tmp_path / "runs" / "digits_smoke" / "report.md").read().splitlines()
    assert lines[0] == "# Run report: digits_smoke"
    assert lines[2] == ("digits, 30 rounds, weight-shared (SuperFed). Work directory: `runs/digits_smoke/`.")
    # Flags before or after the RUN_DIR, `--out DIR` with a space: absl parses them as argparse did.
    assert report_cli.main(["--json", "runs/digits_smoke", "--out", "out"]) == 0
    assert json.loads(capsys.readouterr().out) == {"report": str(tmp_path / "out" / "report.md"),
                                                   "plot": str(tmp_path / "out" / "pareto.png")}
    assert open(tmp_path / "out" / "report.md").readline() == "# Run report: digits_smoke\n"


def test_report_help_and_a_missing_run_dir(capsys):
    assert report_cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("superfed-report: one RUN_DIR") and "usage: superfed-report RUN_DIR" in out
    for flag in ("--out", "--style", "--width", "--height", "--json"):
        assert f"\n  {flag}" in out
    assert report_cli.main([]) == 2
    assert capsys.readouterr().err == ("error: no RUN_DIR given: name the work directory of a finished run "
                                       "(several: a combined report)\n")
    assert report_cli.main(["somewhere", "--style=poster"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "poster" in err and err.count("\n") == 1


def test_the_training_run_s_cost_line_in_prefixes_and_binary_units():
    from superfed_jax.reports import run_cost
    report = {"superfed": {"total_macs": 2_420_000, "mean_client_gmacs": 0.0006049,
                           "total_bytes_per_direction": 410_700},
              "baseline": {"archs": [{}, {}], "total_macs": 9_700_000, "total_bytes_per_direction": 1_700_000},
              "ratios": {"compute_ratio": 4.0083, "comm_ratio": 4.1393}}
    # 410700 B / 1024 = 401.07 KiB; 0.0006049 GMACs = 604.9 kMACs.
    assert run_cost.cost_summary(report).splitlines()[0] == (
        "cost: 2.42 MMACs forward per image summed over the run's clients (mean client 604.9 kMACs), "
        "401.1 KiB communicated per direction")
