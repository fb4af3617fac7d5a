"""Per-round metrics as the driver records them: read from the device in batches, summarised per
evaluation, appended to `metrics.jsonl`."""
import json

import numpy as np

from superfed_jax.federated import sharding


def host_round_metrics(in_flight: list[dict]) -> list[dict]:
    """Reads per-round device metrics to the host (at a logging or checkpoint boundary only)."""
    values = sharding.to_host(in_flight)
    return [{"beta": float(v["beta"]), "train_loss": float(v["train_loss"]),
             "clients_nonfinite": int(v["clients_nonfinite"])} for v in values]


def round_summary(pending: list[dict]) -> dict:
    """The rounds since the last evaluation: last beta, mean train loss, total non-finite clients."""
    return {"beta": pending[-1]["beta"],
            "train_loss": float(np.mean([p["train_loss"] for p in pending])),
            "clients_nonfinite": sum(p["clients_nonfinite"] for p in pending)}


def append_record(metrics_file, record: dict) -> None:
    """Appends one evaluation record as a JSON line and flushes it (a crash loses no written record)."""
    metrics_file.write(json.dumps(record) + "\n")
    metrics_file.flush()
