"""Per-round metrics as the driver records them: read from the device in batches, one row per round
appended to `rounds.jsonl`, summarised per evaluation in `metrics.jsonl`.

What every number means: docs/run_outputs.md.
"""
import json

import jax.numpy as jnp
import numpy as np

from superfed_jax.federated import sharding


class NothingTrained(ValueError):
    """Every client of every round of the run failed (non-finite), so nothing was trained."""


def host_round_metrics(in_flight: list[dict], clients_per_round: int | None = None) -> list[dict]:
    """Reads per-round device metrics to the host (at a logging or checkpoint boundary only).

    A round in which all `clients_per_round` clients were non-finite trained nothing; its train_loss is
    NaN (the device value averages over no client and would read 0.0, which looks like a perfect fit).
    """
    values = sharding.to_host(in_flight)
    rounds = [{"beta": float(v["beta"]), "train_loss": float(v["train_loss"]),
               "clients_nonfinite": int(v["clients_nonfinite"]),
               **({"dp_clipped": int(v["dp_clipped"])} if "dp_clipped" in v else {})} for v in values]
    for r in rounds:
        if clients_per_round is not None and r["clients_nonfinite"] >= clients_per_round:
            r["train_loss"] = float("nan")
    return rounds


def shown_loss(round_metrics: dict, clients_per_round: int):
    """The round's train loss for the progress line, on the device (one scalar to read): NaN if every
    client failed, where the device value averages over no client and reads 0.0."""
    failed = round_metrics["clients_nonfinite"] >= clients_per_round
    return jnp.where(failed, jnp.nan, round_metrics["train_loss"])


# The fields of an evaluation record that summarise the rounds since the previous evaluation
# (`round_summary`); rounds.jsonl holds them per round.
SUMMARY_FIELDS = ("beta", "train_loss", "clients_nonfinite")


def round_rows(host_rows: list[dict], first_round: int, stamps: dict) -> list[dict]:
    """The rows of rounds.jsonl for consecutive rounds from `first_round`.

    Args:
      host_rows: `host_round_metrics` of those rounds, in order.
      first_round: the number of the first of them (rounds count from 1).
      stamps: round -> (wall_time, seconds) from `round_clock.RoundClock`, for every one of them.
    """
    rows = []
    for round_, values in enumerate(host_rows, start=first_round):
        wall_time, seconds = stamps[round_]
        rows.append({"round": round_, **values, "seconds": seconds, "wall_time": wall_time})
    return rows


def append_rows(rounds_file, rows: list[dict]) -> None:
    """Appends rows of rounds.jsonl (one JSON line each) and flushes them."""
    rounds_file.writelines(json.dumps(row) + "\n" for row in rows)
    rounds_file.flush()


def round_summary(pending: list[dict]) -> dict:
    """The rounds since the last evaluation: last beta, mean train loss of the rounds that trained (NaN
    if none did), total non-finite clients, and with differential privacy the total clipped updates."""
    losses = [p["train_loss"] for p in pending if np.isfinite(p["train_loss"])]
    summary = {"beta": pending[-1]["beta"],
               "train_loss": float(np.mean(losses)) if losses else float("nan"),
               "clients_nonfinite": sum(p["clients_nonfinite"] for p in pending)}
    if "dp_clipped" in pending[-1]:
        summary["dp_clipped"] = sum(p.get("dp_clipped", 0) for p in pending)
    return summary


def failed_rounds_warning(pending: list[dict], clients_per_round: int, round_: int) -> str:
    """A warning if, in some of the rounds since the last evaluation, every client failed; else ''."""
    failed = sum(p["clients_nonfinite"] >= clients_per_round for p in pending)
    if not failed:
        return ""
    return (f"warning: in {failed} of the {len(pending)} rounds up to round {round_} every client's update "
            "was non-finite (NaN/inf) and nothing was trained; lower client.learning_rate or "
            "client.clip_norm")


def nothing_trained(records: list[dict], clients_per_round: int) -> bool:
    """Whether every client of every round up to the last record failed (per the records' counts)."""
    if not records:
        return False
    return sum(r["clients_nonfinite"] for r in records) >= records[-1]["round"] * clients_per_round


def append_record(metrics_file, record: dict) -> None:
    """Appends one evaluation record as a JSON line and flushes it (a crash loses no written record)."""
    metrics_file.write(json.dumps(record) + "\n")
    metrics_file.flush()
