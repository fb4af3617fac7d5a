"""Text formatting shared by the Markdown reports: percentages, archs, titles, and the SI prefixes of
`superfed_jax._readable` (the one place units are written, for the commands as for the reports)."""
import json
import math

from superfed_jax._readable import si  # noqa: F401  (the reports' SI prefixes are the commands')
from superfed_jax.reports.run_record import RunRecord, setting


def compute_label(cost_unit: str = "image") -> str:
    """The cost tables' compute row: forward MACs per `cost_unit` (the family's: 'image', 'token'),
    summed over the clients of every round."""
    return f"compute: forward MACs per {cost_unit}, summed over clients"


def cost_labels(cost_unit: str = "image") -> dict:
    """cost.json field -> (row label, unit) of the cost tables (the combined report, the claim)."""
    return {"total_macs": (compute_label(cost_unit), "MACs"),
            "total_training_macs": ("compute: training MACs (examples x epochs x 3)", "MACs"),
            "total_bytes_per_direction": ("communication per direction", "B")}


def percent(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def arch_text(arch: dict) -> str:
    return json.dumps(arch, separators=(",", ":"))


def size_note(rows: list[dict]) -> str:
    sources = {row["size_source"] for row in rows}
    notes = {"space.json": "computed on the run's final space (space.json)",
             "cost.json": "as the run computed them on its final space (cost.json)",
             "config.json": "computed on config.json's space, which the dataset's input shape and class "
                            "count may have changed (no space.json in the work directory)"}
    return "MACs and params: " + "; ".join(notes[s] for s in sorted(sources)) + "."


def runs_title(run: RunRecord) -> str:
    """'<dataset>, <rounds> rounds' of a run."""
    return f"{setting(run.config, 'data.name')}, {setting(run.config, 'fl.rounds')} rounds"
