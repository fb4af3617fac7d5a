"""The workdir of a run: one run at a time, no silent restart over results, readable I/O failures.

* `default_workdir(config_value, data_name, data_path)`: the --workdir of a run that names none, one per
  config, variant and .npz file, so the README's commands run one after another without colliding.

* `hold_lock(workdir)`: an OS lock (fcntl.flock) on WORKDIR/.lock for the whole run. A second run on the
  same workdir stops at once, naming the process that holds it (pid, host and start time are written into
  the lock file). The OS drops the lock when its process ends in any way, so a crash leaves no stale lock;
  the file itself stays (deleting it would let two runs lock two different files).
* `check_start(workdir, overwrite, config)`: a workdir that holds results (evaluation records, a report)
  but no checkpoint is refused unless the user asks to start over (`overwrite=True`, which clears the run's
  files first, and only those), or it is this very run stopped before its first checkpoint, which starts
  over by itself.
* `check_dry_run_target(workdir)`: a dry run writes cost.json; it must not do so over a trained run.
* `RunIOError` and `io_error_message`: a filesystem failure as one message naming the path, what failed,
  what was lost and how to continue.
"""
import contextlib
import datetime
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import sys
from typing import Optional

from superfed_jax import _cli

LOCK_FILE = ".lock"
# Everything a training run writes into its workdir; `overwrite=True` clears these and nothing else.
RUN_FILES = ("config.json", "space.json", "metrics.jsonl", "metrics.jsonl.tmp", "cost.json", "report.md",
             "pareto.png", "tb", "checkpoints", "checkpoints_damaged", "rounds.jsonl", "rounds.jsonl.tmp",
             "provenance.json", "provenance.json.tmp",
             # W&B's local files of the run's sessions (log.wandb_project; offline runs not yet synced too)
             "wandb",
             # the report's other figures (PNG + SVG) and its tables as CSV
             "pareto.svg", "curves.png", "curves.svg", "search.png", "search.svg", "report_accuracy.csv",
             "report_cost.csv", "report_curves.csv", "report_search.csv",
             # the training loss by round (from rounds.jsonl), as figure and CSV
             "train_loss.png", "train_loss.svg", "report_train_loss.csv",
             # report_accuracy.csv's name for a run whose eval.metric is perplexity or the loss
             "report_perplexity.csv", "report_loss.csv",
             # the combined report's seed table, when a run directory is its default --out
             "report_seeds.csv",
             # what the post-training commands derive from the run (posttrain/search.py, latency.py): the
             # search describes a supernet the new run replaces, and the latency cache is keyed by arch
             # text alone, which a new run with another space would read as other subnets
             "search.json", "latency_cache.json", "latency_cache.json.tmp")
# What a training run leaves that a dry run must not write beside (a dry run writes only cost.json).
TRAINED_RUN_FILES = ("config.json", "space.json", "metrics.jsonl", "checkpoints", "report.md")


WORKDIRS = "workdirs"  # the default workdirs' parent, relative to the current directory (.gitignore'd)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")  # what a directory name should not carry (spaces, '/', JSON)


def _variant_name(variant: str) -> str:
    """One variant as a name part: 'smoke', 'fedavg=largest' -> 'fedavg_largest', an arch JSON -> a hash.

    An arch JSON would make an unreadable (and, with '/', invalid) directory name, so it becomes
    'fedavg_' + 8 hex digits of its canonical form: the same arch, however spaced or ordered, gives the
    same workdir (and so resumes), another arch another one.
    """
    key, equals, value = variant.partition("=")
    value = value.strip()
    if not equals:
        return _UNSAFE.sub("_", key)
    if re.fullmatch(r"[A-Za-z0-9_.-]+", value):
        return f"{key}_{value}"
    try:
        canonical = json.dumps(json.loads(value), sort_keys=True, separators=(",", ":"))
    except ValueError:  # not JSON: apply_variant will say so; any stable name will do until then
        canonical = value
    return f"{key}_{hashlib.sha256(canonical.encode()).hexdigest()[:8]}"


def default_workdir(config_value: str, data_name: Optional[str] = None,
                    data_path: Optional[str] = None) -> str:
    """The workdir of a run without --workdir: workdirs/<config>[_<variant>...].

    `config_value` is the --config value ('PATH[:VARIANT]'); the name is the file's name without '.py',
    then each variant, 'smoke' first, then 'fedavg_<arch>' (`_variant_name`), whatever their order on the
    command line. With `data_name` 'npz' the data file names the run in place of the config
    (workdirs/npz_<file name without .npz>): two data sets trained with one config must not share a
    workdir, and a resume refuses another data.path anyway.

        default_workdir('configs/digits.py')                        -> 'workdirs/digits'
        default_workdir('digits:fedavg=largest,smoke')             -> 'workdirs/digits_smoke_fedavg_largest'
        default_workdir('configs/digits.py', 'npz', '/d/my_data.npz') -> 'workdirs/npz_my_data'
    """
    path, _, variant = config_value.partition(":")
    base = os.path.basename(os.path.normpath(path)) if path else "config"
    name = base[:-3] if base.endswith(".py") else base
    if data_name == "npz" and data_path:
        stem = os.path.basename(os.path.normpath(str(data_path)))
        name = "npz_" + (stem[:-4] if stem.endswith(".npz") else stem)
    # 'smoke' before 'fedavg': a variant's order on the command line does not change the run.
    variants = sorted(filter(None, _cli.split_variants(variant)),
                      key=lambda part: (not part.startswith("smoke"), part))
    parts = [_UNSAFE.sub("_", name)] + [_variant_name(part) for part in variants]
    return os.path.join(WORKDIRS, "_".join(parts))


class WorkdirError(ValueError):
    """The workdir cannot be used as asked (busy, holds results without a checkpoint, holds a trained run)."""


class RunIOError(Exception):
    """A filesystem failure, already phrased for the user; `resumable`: the same command continues."""

    def __init__(self, message: str, resumable: bool):
        super().__init__(message)
        self.resumable = resumable


# ------------------------------------------------------------------------------------------- the lock


def lock_owner_text() -> str:
    """What the lock file says about this process: pid, host and start time (UTC)."""
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"pid {os.getpid()} on host {socket.gethostname()}, started {started}"


@contextlib.contextmanager
def hold_lock(workdir: str):
    """Holds an exclusive lock on WORKDIR/.lock within the block (creating the workdir if needed).

    Raises:
      WorkdirError: another process holds the lock (the message names it).
      RunIOError: the workdir or its lock file cannot be created (read-only, no permission, disk full).
    """
    path = os.path.join(workdir, LOCK_FILE)
    try:
        os.makedirs(workdir, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise RunIOError(io_error_message(error, workdir, "creating the workdir and its lock file",
                                          path), resumable=False) from error
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_text(path) or "a process that did not say which"
            raise WorkdirError(
                f"{workdir} is in use by another run ({owner}; lock: {path}). Two runs in one workdir "
                "would interleave their records. Wait for it to end, stop it, or use another --workdir")
        try:
            os.ftruncate(descriptor, 0)
            os.write(descriptor, (lock_owner_text() + "\n").encode())
        except OSError:
            pass  # the lock holds without the note; only the message naming the owner is poorer
        yield path
    finally:
        os.close(descriptor)  # releases the lock


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


# ------------------------------------------------------------------------------------ what it holds


def has_checkpoint(workdir: str) -> bool:
    """Whether WORKDIR/checkpoints holds at least one finished checkpoint (a step directory)."""
    directory = os.path.join(workdir, "checkpoints")
    return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def results_held(workdir: str) -> list[str]:
    """The result files of a run in `workdir`: metrics.jsonl with content, report.md, pareto.png."""
    held = []
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    if os.path.isfile(metrics_path) and _read_text(metrics_path):
        held.append(metrics_path)
    held += [os.path.join(workdir, name) for name in ("report.md", "pareto.png")
             if os.path.exists(os.path.join(workdir, name))]
    return held


def clear_run_files(workdir: str) -> list[str]:
    """Deletes the files a training run writes (RUN_FILES) from `workdir`; returns those deleted."""
    cleared = []
    for name in RUN_FILES:
        path = os.path.join(workdir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        else:
            continue
        cleared.append(path)
    return cleared


def check_start(workdir: str, overwrite: bool, config: Optional[dict] = None) -> None:
    """Refuses a workdir with results but no checkpoint; with `overwrite`, clears the run's files first.

    Without a checkpoint a run would start over and append a second history to the results it finds. The
    one exception is the same run stopped before its first checkpoint (`stopped_before_first_checkpoint`,
    given the `config` about to run): nothing of it can be resumed and nothing else is there, so its
    partial files are cleared, saying so, and it starts over as the README's "rerun the same command"
    promises.
    """
    if overwrite:
        cleared = clear_run_files(workdir)
        if cleared:
            print(f"overwrite=True: cleared {len(cleared)} files of the previous run in {workdir}",
                  flush=True)
        return
    held = results_held(workdir)
    if not held or has_checkpoint(workdir):
        return
    last_round = stopped_before_first_checkpoint(workdir, config) if config is not None else None
    if last_round is not None:
        cleared = clear_run_files(workdir)
        print(f"starting over: {workdir} holds this run stopped before its first checkpoint (records up to "
              f"round {last_round}, nothing to resume from); rewound it by clearing its {len(cleared)} "
              "partial files", file=sys.stderr, flush=True)
        return
    raise WorkdirError(
        f"{workdir} holds results of an earlier run ({', '.join(os.path.basename(p) for p in held)}) "
        "but no checkpoint to resume from; starting here would mix two runs' records. Nothing was "
        "changed. Use another --workdir, or give --config.overwrite=True to delete that run's files "
        f"({', '.join(RUN_FILES[:3])}, ...) and start over")


def stopped_before_first_checkpoint(workdir: str, config: dict) -> Optional[int]:
    """The last recorded round if `workdir` holds a run of `config` stopped before its first checkpoint
    committed, else None.

    That is: its config.json may be resumed by `config` (`resume.config_differences`), it never finished
    (no report.md or figure) and no record goes past the round of its first checkpoint (checkpoint
    .every_rounds, or the last round): a run whose checkpoints were deleted afterwards, or another run's
    files, are still refused.
    """
    from superfed_jax.run import resume  # late: resume reads the config schema

    if any(os.path.exists(os.path.join(workdir, name)) for name in ("report.md", "pareto.png")):
        return None
    try:
        saved = resume.read_saved_config(workdir)
    except ValueError:  # a damaged config.json: the resume check names it
        return None
    if not saved or resume.config_differences(saved, config):
        return None
    records = (resume.read_metrics(os.path.join(workdir, "metrics.jsonl"))
               + resume.read_metrics(os.path.join(workdir, "rounds.jsonl")))
    last_round = max((record["round"] for record in records), default=0)
    try:
        first_checkpoint = min(int(saved["checkpoint"]["every_rounds"]), int(saved["fl"]["rounds"]))
    except (KeyError, TypeError, ValueError):
        return None
    return last_round if last_round <= first_checkpoint else None


def check_dry_run_target(workdir: str) -> None:
    """Refuses to write a dry run's cost.json into a workdir holding a training run's files."""
    found = [name for name in TRAINED_RUN_FILES if os.path.exists(os.path.join(workdir, name))]
    if found:
        raise WorkdirError(
            f"{workdir} holds a training run ({', '.join(found)}); a dry run would overwrite its cost.json. "
            "Nothing was written. Give the dry run another --workdir")


# --------------------------------------------------------------------------------------- I/O errors


def newest_checkpoint(workdir: str) -> int | None:
    """The highest finished checkpoint step in `workdir` (by directory name), or None."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return None
    steps = [int(name) for name in os.listdir(directory) if name.isdigit()]
    return max(steps) if steps else None


def _short_reason(text: str) -> str:
    """The first line of an error's text, cut to 300 characters, keeping the operating system's reason:
    tensorstore ends its messages with it ('...: File too large [os_error_code='27']') after paths long
    enough that a plain cut drops it (it did under pytest's deeper temporary directories)."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    cut = first[:300]
    os_reason = (re.search(r":\s*([^:\[\]]+?)\s*\[os_error_code='?\d+'?\]", text)
                 or re.search(r"\[OS error \d+: ([^\]]+)\]", text))
    if os_reason and os_reason.group(1) not in cut:
        cut += f" ... {os_reason.group(1)}"
    return cut


def io_error_message(error: BaseException, workdir: str, action: str, path: str = "") -> str:
    """One message for a failed filesystem operation: the path, what failed, what was lost, what to do."""
    path = getattr(error, "filename", None) or path or workdir
    reason = getattr(error, "strerror", None) or _short_reason(str(error))
    code = getattr(error, "errno", None)
    if code == errno.ENOSPC or "RESOURCE_EXHAUSTED" in str(error) or "No space left" in str(error):
        advice = "free disk space (or move the workdir to a larger disk)"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "make the workdir writable (or copy it to a writable place and pass that --workdir)"
    else:
        advice = "fix the cause"
    step = newest_checkpoint(workdir) if os.path.isdir(workdir) else None
    if step is None:
        kept = "Nothing was lost: no round had been checkpointed in this workdir"
        then = "then rerun the same command to start the run"
    else:
        kept = (f"Nothing already saved was lost: the newest checkpoint (after round {step}) and the "
                "metrics written before it are intact")
        then = f"then rerun the same command to continue from round {step}"
    return f"{action} failed: {path}: {reason}. {kept}; {advice}, {then}"


def io_failure(error: BaseException, workdir: str, action: str, path: str = "") -> RunIOError:
    """`error` as a RunIOError; resumable (the same command continues) when the cause is a full disk."""
    transient = getattr(error, "errno", None) == errno.ENOSPC or any(
        marker in str(error) for marker in ("RESOURCE_EXHAUSTED", "No space left"))
    return RunIOError(io_error_message(error, workdir, action, path), resumable=transient)


def concerns(error: OSError, workdir: str) -> bool:
    """Whether a failed file operation was on a path inside `workdir` (or names no path at all)."""
    filename = getattr(error, "filename", None)
    if filename is None:
        return True
    inside = os.path.abspath(os.fsdecode(filename))
    return os.path.commonpath([inside, os.path.abspath(workdir)]) == os.path.abspath(workdir)


def is_io_failure(error: BaseException) -> bool:
    """Whether `error` is a filesystem failure (OSError, or orbax/tensorstore's wrapping of one)."""
    if isinstance(error, OSError):
        return True
    text = str(error)
    # tensorstore's words for a write the OS refused ("Failed writing", "Failed to write N bytes": a file
    # size limit, a quota), besides a full disk and permissions.
    return any(marker in text for marker in ("RESOURCE_EXHAUSTED", "No space left", "Permission denied",
                                             "Read-only file system", "Error writing local file",
                                             "Failed writing", "Failed to write"))
