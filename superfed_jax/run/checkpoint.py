"""Checkpoints of a run with orbax: the whole server state plus a small JSON of host-side progress.

A checkpoint is WORKDIR/checkpoints/<round>/ holding
  state/  the `ServerState` (supernet params, round, root RNG key data, tracking counters): everything a
          round reads, so a restored run replays the remaining rounds exactly;
  host/   JSON: the round, a SHA-256 of the state's bytes, and the per-round metrics not yet written to
          metrics.jsonl (so a resumed run writes the same records as an uninterrupted one).

Atomicity comes from orbax: a checkpoint is written under a temporary name and renamed when complete, so
a crash mid-save never leaves a directory that is taken for a finished checkpoint. Corruption after the
fact (a truncated or overwritten file) is caught on restore, either by orbax failing to read or by the
checksum not matching; `restore_newest_intact` then falls back to the next older checkpoint and says so.
Saves are synchronous: the caller donates the state to the next round right after saving.
"""
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import threading
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from superfed_jax.federated import sharding

CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "checkpoints_damaged"  # damaged checkpoints are moved here, not deleted: kept for inspection


class Restored(NamedTuple):
    """The newest intact checkpoint: its state, host JSON and the newer steps that were skipped."""

    state: Any
    host: dict
    skipped: list  # "step N: reason (moved to DIR)" for every newer checkpoint that could not be used


class NoIntactCheckpoint(ValueError):
    """Checkpoints exist but none of them can be restored."""


def checkpoint_dir(workdir: str) -> str:
    """WORKDIR/checkpoints."""
    return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)


def make_manager(workdir: str, keep: int, clean_unfinished: bool = True) -> ocp.CheckpointManager:
    """A synchronous orbax manager for WORKDIR/checkpoints that keeps the newest `keep` checkpoints.

    `clean_unfinished`: first delete what a save killed midway left (`remove_unfinished_saves`); a
    command that only reads the run (search, export) passes False, since a run may be training there.
    Orbax's background reports of a failed save or restore are silenced from here on
    (`quiet_background_reports`): the failure itself reaches the caller as an exception.
    """
    quiet_background_reports()
    if clean_unfinished:
        remove_unfinished_saves(workdir)
    # Not orbax's cleanup_tmp_directories: it runs in a background thread that nothing waits for, so a
    # command ending soon after (a refused resume, a search with nothing to restore) had that thread
    # print "cannot schedule new futures after shutdown" with its traceback.
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=False,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


UNFINISHED_MARKER = ".orbax-checkpoint-tmp"  # in the name of a save's folder until orbax commits it


def remove_unfinished_saves(workdir: str) -> list[str]:
    """Deletes the temporary folders of saves that never committed (a kill mid-save); returns them.

    Only process 0 deletes (every process of a multi-host run shares the directory). A committed
    checkpoint's folder is named by its step alone and is never touched.
    """
    directory = checkpoint_dir(workdir)
    if jax.process_index() != 0 or not os.path.isdir(directory):
        return []
    removed = [os.path.join(directory, name) for name in sorted(os.listdir(directory))
               if UNFINISHED_MARKER in name]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def state_digest(state) -> str:
    """SHA-256 over every leaf's dtype, shape and bytes (host copies), in tree order."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(sharding.to_host(state)):
        array = np.ascontiguousarray(leaf)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _on_disk(state) -> dict:
    """The tree orbax writes for a `ServerState`: its fields by name, without `server_opt` when that has no
    leaves (the server takes the mean). Checkpoints written before the server optimiser existed have no such
    entry, so they and today's checkpoints of such runs read back alike."""
    fields = {field.name: getattr(state, field.name) for field in dataclasses.fields(state)}
    if "server_opt" in fields and not jax.tree.leaves(fields["server_opt"]):
        del fields["server_opt"]
    return fields


def save(manager: ocp.CheckpointManager, step: int, state, host: dict) -> None:
    """Writes checkpoint `step` (the number of completed rounds); returns when it is on disk."""
    host = dict(host, round=int(step), digest=state_digest(state))
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_on_disk(state)),
                                               host=ocp.args.JsonSave(host)), force=True)
    manager.wait_until_finished()


def restore(manager: ocp.CheckpointManager, step: int, target_state) -> tuple[Any, dict]:
    """Checkpoint `step`, placed like `target_state`; raises if it is unreadable or fails its checksum."""
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_on_disk(target_state)), host=ocp.args.JsonRestore()))
    state, host = target_state.replace(**restored["state"]), dict(restored["host"])
    if host.get("round") != step:
        raise ValueError(f"host JSON says round {host.get('round')}")
    if host.get("digest") != state_digest(state):
        raise ValueError("checksum mismatch: the saved arrays were modified or truncated")
    return state, host


def restore_newest_intact(manager: ocp.CheckpointManager, target_state) -> Restored | None:
    """The newest checkpoint that restores and verifies; None when there are no checkpoints at all.

    Damaged newer checkpoints are moved to WORKDIR/checkpoints_damaged/ so that the resumed run can save
    those steps again.

    Raises:
      NoIntactCheckpoint: checkpoints exist but every one is damaged (never silently start over).
    """
    steps = sorted(manager.all_steps(), reverse=True)
    skipped = []
    for step in steps:
        try:
            state, host = restore(manager, step, target_state)
        except Exception as error:  # orbax/tensorstore raise many types for damaged files
            skipped.append(f"step {step}: {type(error).__name__}: {_first_line(error)}")
            continue
        for i, step_skipped in enumerate(steps[:len(skipped)]):
            skipped[i] += f" (moved to {_move_aside(manager, step_skipped)})"
        manager.reload()
        return Restored(state, host, skipped)
    if not steps:
        return None
    raise NoIntactCheckpoint(
        f"no checkpoint in {manager.directory} could be restored (nothing was moved or deleted):\n  "
        + "\n  ".join(skipped)
        + "\nthe run's config matches them, so their files are damaged or were written by another version "
        "of this code or for other data (space.json records the data's shapes). Keep the directory for "
        "inspection; to start the run over, use another --workdir (or --config.overwrite=True, which "
        "deletes this run's files)")


def host_json_path(workdir: str, step: int) -> str:
    """Where orbax keeps checkpoint `step`'s host JSON (its `JsonSave` item)."""
    return os.path.join(checkpoint_dir(workdir), str(step), "host", "metadata")


def saved_configs(workdir: str) -> list[tuple[int, dict]]:
    """(step, config) from the host JSON of every finished checkpoint, newest first, read without orbax.

    Lets a resume compare configs before asking orbax to restore arrays whose shapes a changed config
    would not match. Unreadable host JSONs are left out (the restore judges those checkpoints).
    """
    directory = checkpoint_dir(workdir)
    if not os.path.isdir(directory):
        return []
    found = []
    for step in sorted((int(n) for n in os.listdir(directory) if n.isdigit()), reverse=True):
        try:
            with open(host_json_path(workdir, step)) as f:
                host = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(host, dict) and isinstance(host.get("config"), dict):
            found.append((step, host["config"]))
    return found


def _move_aside(manager: ocp.CheckpointManager, step: int) -> str:
    """Moves checkpoint `step` to the damaged folder beside the checkpoints; returns its new path."""
    source = os.path.join(str(manager.directory), str(step))
    target_root = os.path.join(os.path.dirname(str(manager.directory)), DAMAGED_DIR)
    os.makedirs(target_root, exist_ok=True)
    target, n = os.path.join(target_root, str(step)), 1
    while os.path.exists(target):
        target, n = os.path.join(target_root, f"{step}.{n}"), n + 1
    os.replace(source, target)
    return target


def _is_closed_loop_report(exc_type, value) -> bool:
    return exc_type is RuntimeError and str(value) == "Event loop is closed"


def _is_abandoned_orbax_read(unraisable) -> bool:
    """Whether an unraisable report is one of orbax's array reads, abandoned with its failed restore.

    Those reads are coroutines; when the restore gives up, the ones still holding an exception are closed
    by the garbage collector, which prints "Exception ignored in: <coroutine object ...>" with a traceback
    each (0 to 12 per restore, seen under load).
    """
    code = getattr(unraisable.object, "cr_code", None)
    return code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename


class _ClosedLoopLogFilter(logging.Filter):
    """Drops asyncio's reports of failed tasks once a restore has failed (orbax's reads in flight).

    After one read of a damaged checkpoint fails, the restore's other reads fail too and asyncio logs each
    one ("Task exception was never retrieved", or the closed loop) with a traceback. The failure is
    already reported once as a skipped checkpoint; saves report their errors as exceptions, not here.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info or "Event loop is closed" in record.getMessage())


class _OrbaxThreadLogFilter(logging.Filter):
    """Drops orbax's log of an exception in one of its worker threads ("_SignalingThread.run() raised an
    exception", with a traceback): orbax raises that same exception again in the thread that waits for
    the save or restore, which reports it once (a skipped checkpoint, a full disk)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_orbax = f"{os.sep}orbax{os.sep}" in (record.pathname or "")
        return not (from_orbax and "raised an exception" in record.getMessage())


def quiet_background_reports() -> None:
    """Silences what orbax's background threads print about a failed save or restore; keeps every other
    report. Installed once per process, before the first save or restore.

    When one write or read fails (a full disk, a damaged file), orbax closes the event loop of that
    operation while tensorstore's other writes or reads are still in flight; each of them then reports,
    from its own thread, that it cannot hand back its result ("Event loop is closed", one per array), and
    orbax logs the failing thread's exception with its traceback. The failure itself reaches the caller as
    an exception, which the run reports in one message.
    """
    if getattr(sys.excepthook, "_drops_closed_loop", False):
        return
    previous_hook, previous_thread_hook = sys.excepthook, threading.excepthook
    previous_unraisable_hook = sys.unraisablehook

    def excepthook(exc_type, value, traceback):
        if not _is_closed_loop_report(exc_type, value):
            previous_hook(exc_type, value, traceback)

    def thread_excepthook(arguments):
        if not _is_closed_loop_report(arguments.exc_type, arguments.exc_value):
            previous_thread_hook(arguments)

    def unraisable_hook(unraisable):
        if not (_is_closed_loop_report(unraisable.exc_type, unraisable.exc_value)
                or _is_abandoned_orbax_read(unraisable)):
            previous_unraisable_hook(unraisable)

    excepthook._drops_closed_loop = True
    sys.excepthook, threading.excepthook = excepthook, thread_excepthook
    sys.unraisablehook = unraisable_hook
    # asyncio reports an exception of a task or callback on a closed loop through its logger, not a hook.
    logging.getLogger("asyncio").addFilter(_ClosedLoopLogFilter())
    logging.getLogger("absl").addFilter(_OrbaxThreadLogFilter())  # orbax logs through absl's logger


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else ""
