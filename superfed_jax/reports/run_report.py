"""Run reports: accuracy against forward MACs per tracked arch, with the run's cost, as Markdown and a plot.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879, compare one weight-shared
supernet with every subnet trained alone by FedAvg: accuracy per MACs bucket (docs/algorithm.md 10) and total
compute and communication (docs/algorithm.md 8). This module reports one finished work directory
(`config.json`, `metrics.jsonl`, `cost.json`, optionally `space.json`, read by `run_record`); the
training driver calls it at the end of every run:

* `write_run_report(workdir)`: one run -> ``WORKDIR/report.md`` and ``WORKDIR/pareto.png``: per tracked
  arch, test accuracy at the best validation round against forward MACs, and the run's cost against
  independent FedAvg as estimated by `run_cost` (``cost.json``).
* `summary_table(space, tracked, best)`: the table the driver prints at the end of a run.

The comparison of a weight-shared run with FedAvg runs is `compare`; the command line is `cli`.
"""
import json
import os
from typing import Optional

from superfed_jax.reports.format import arch_text, percent, runs_title, si, size_note
from superfed_jax.reports.plot import plot_pareto
from superfed_jax.reports.run_record import RunRecord, arch_rows, is_fedavg_baseline, read_run, select_best
from superfed_jax.supernet import cost as cost_lib

__all__ = ["write_run_report", "summary_table", "provenance_lines"]


def _cost_lines(cost: Optional[dict]) -> list[str]:
    """The Markdown cost section of one run (from its cost.json)."""
    if cost is None:
        return ["## Cost", "", "No cost.json in the work directory.", ""]
    run, base, ratios = cost["superfed"], cost["baseline"], cost["ratios"]
    lines = ["## Cost", "",
             f"{cost['rounds']} rounds, {cost['clients_per_round']} clients per round. Independent FedAvg: "
             f"each of {len(base['archs'])} archs trained alone at the same rounds and clients per round "
             "(estimated from the archs' sizes).", "",
             "| | this run | independent FedAvg | FedAvg / this run |", "|---|---|---|---|",
             f"| compute: forward MACs per image, summed over clients | {si(run['total_macs'], 'MACs')} "
             f"| {si(base['total_macs'], 'MACs')} | {ratios['compute_ratio']:.2f}x |"]
    if "total_training_macs" in run and "example_compute_ratio" in ratios:
        lines.append(f"| compute: training MACs (examples x epochs x 3) "
                     f"| {si(run['total_training_macs'], 'MACs')} "
                     f"| {si(base['total_training_macs'], 'MACs')} "
                     f"| {ratios['example_compute_ratio']:.2f}x |")
    lines += [f"| communication per direction | {si(run['total_bytes_per_direction'], 'B')} "
              f"| {si(base['total_bytes_per_direction'], 'B')} | {ratios['comm_ratio']:.2f}x |", "",
              "FedAvg archs: " + ", ".join(arch_text(a["arch"]) for a in base["archs"]) + ".", ""]
    return lines


def _run_title(run: RunRecord) -> str:
    kind = "FedAvg of one arch" if is_fedavg_baseline(run.config) else "weight-shared (SuperFed)"
    return f"{runs_title(run)}, {kind}"



def provenance_lines(workdir: str) -> list[str]:
    """The Markdown provenance section: one row per session of WORKDIR/provenance.json (written by
    `superfed_jax.run.provenance`); one line saying so when the file is missing or unreadable."""
    path = os.path.join(workdir, "provenance.json")
    try:
        with open(path) as f:
            sessions = json.load(f)["sessions"]
    except (OSError, ValueError, KeyError, TypeError):
        return ["## Provenance", "", "No readable provenance.json in the work directory.", ""]
    lines = ["## Provenance", "", "Each start or resume of the run that computed the rounds reported here "
             "(from `provenance.json`; a commit marked *dirty* had uncommitted changes).", "",
             "| from round | started (UTC) | commit | jax / jaxlib / flax / optax / orbax / numpy | Python "
             "| platform | devices | CPU, SIMD flags |", "|---|---|---|---|---|---|---|---|"]
    for s in sessions:
        git, versions, device, cpu = (s.get(k) or {} for k in ("git", "packages", "jax", "cpu"))
        commit = (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")
        packages = " / ".join(str(versions.get(n)) for n in ("jax", "jaxlib", "flax", "optax",
                                                              "orbax-checkpoint", "numpy"))
        lines.append(f"| {s.get('from_round')} | {s.get('started_at')} | `{commit}` | {packages} "
                     f"| {(s.get('python') or {}).get('version')} | {(s.get('platform') or {}).get('platform')} "
                     f"| {device.get('device_count')} x {device.get('device_kind')} ({device.get('backend')}, "
                     f"{device.get('process_count')} processes) "
                     f"| {cpu.get('model')}: {' '.join(cpu.get('simd_flags') or []) or 'flags unknown'} |")
    return lines + [""]


def write_run_report(workdir: str, out: Optional[str] = None) -> dict:
    """Writes ``report.md`` and ``pareto.png`` of one run into ``out`` (default: the work directory).

    Returns:
      ``best_round``, ``rows`` (`arch_rows`), ``cost`` (cost.json or None) and the written ``report`` and
      ``plot`` paths.
    """
    run = read_run(workdir)
    out = out or workdir
    os.makedirs(out, exist_ok=True)
    best = select_best(run.records, run.tracked)
    rows = arch_rows(run, best)
    has_val = any(f"{n}/val_accuracy" in best for n in run.tracked)
    selection = ("the evaluation with the best mean validation accuracy over the tracked archs" if has_val
                 else "the last evaluation (the run has no validation accuracies)")
    lines = [f"# RunRecord report: {_run_title(run)}", "", f"Work directory: `{workdir}`.", "",
             f"Accuracies at round {best['round']} of {run.records[-1]['round']}: {selection}.", "",
             "| arch | d / e | MMACs | params | val acc (%) | test acc (%) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | `{arch_text(r['arch'])}` | {r['macs'] / 1e6:.4g} | {r['params']:,} "
              f"| {percent(r['val_accuracy'])} | {percent(r['test_accuracy'])} |" for r in rows]
    lines += ["", size_note(rows), ""] + _cost_lines(run.cost) + ["![accuracy vs MACs](pareto.png)", ""]
    lines += provenance_lines(workdir)
    report_path, plot_path = os.path.join(out, "report.md"), os.path.join(out, "pareto.png")
    with open(report_path, "w") as f:
        f.write("\n".join(lines))
    plot_pareto(plot_path, [("tracked archs", rows)],
                f"{_run_title(run)}\ntest accuracy at round {best['round']} (best validation)")
    return {"best_round": int(best["round"]), "rows": rows, "cost": run.cost, "report": report_path,
            "plot": plot_path}


def summary_table(space, tracked: dict, best: dict) -> str:
    """Per tracked arch: MACs, params and validation/test accuracy at the best validation round."""
    lines = [f"{'arch':<12}{'MMACs':>10}{'params':>12}{'best round':>12}{'val acc':>9}{'test acc':>9}"]
    for name, arch in tracked.items():
        lines.append(f"{name:<12}{cost_lib.macs(space, arch) / 1e6:>10.2f}{cost_lib.params(space, arch):>12,}"
                     f"{best['round']:>12}{best.get(f'{name}/val_accuracy', float('nan')):>9.4f}"
                     f"{best.get(f'{name}/test_accuracy', float('nan')):>9.4f}")
    return "\n".join(lines)
