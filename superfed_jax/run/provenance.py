"""Provenance of a run: which code, on which software and machine, computed its rounds.

Every start or resume of a run appends one *session* to ``WORKDIR/provenance.json`` (beside
``config.json``): the round it started from, the git commit of the source tree the package runs from (and
whether that tree had uncommitted changes), the versions of the packages the numbers depend on, Python,
the platform, JAX's backend and devices, and the CPU model with its SIMD flags. Float results depend on
all of these (a different CPU vector width changes the summation order, and with it the last digits of
every round), so a run resumed on another machine must show it.

The file is rewound on resume like ``metrics.jsonl``: a session that started at or after the round being
resumed computed nothing that is kept, so it is dropped; the file lists the sessions that computed the
rounds the run holds, oldest first.

Nothing here fails a run: a missing ``git``, a package installed outside a repository or an unreadable
``/proc/cpuinfo`` is recorded as unknown (None), never raised.
"""
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from typing import Optional

PROVENANCE_FILE = "provenance.json"
# The distributions whose versions decide the numbers of a run (names as pip knows them); superfed_jax's
# own version is read from the package that runs, which need not be the installed distribution.
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")
# SIMD capabilities worth recording, in this order, as /proc/cpuinfo names them (x86 'flags', Arm
# 'Features'). Vector width decides how XLA's CPU code sums floats, hence a run's last digits.
SIMD_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw",
              "avx512vl", "avx512_vnni", "avx512vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
              "asimd", "asimddp", "sve", "sve2")
_GIT_TIMEOUT_S = 10


def _git(directory: str, *args: str, git: str = "git") -> Optional[str]:
    """The stripped stdout of `git -C directory args`, or None if git is missing, times out or fails."""
    try:
        result = subprocess.run([git, "-C", directory, *args], capture_output=True, text=True,
                                timeout=_GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_state(directory: str, git: str = "git") -> dict:
    """The commit of the git work tree holding `directory`, and whether that tree is dirty.

    Returns ``{"commit": sha or None, "dirty": bool or None, "source": directory}``. ``dirty`` means
    tracked files differ from the commit (staged or not), as ``git describe --dirty`` counts it;
    untracked files do not count. None (unknown) when git is not installed, `directory` is not inside a
    work tree, or nothing under `directory` is tracked there (a package installed into a virtual
    environment that happens to lie inside some repository is not that repository's code).
    """
    unknown = {"commit": None, "dirty": None, "source": directory}
    commit = _git(directory, "rev-parse", "HEAD", git=git)
    if commit is None or _git(directory, "ls-files", "--error-unmatch", ".", git=git) is None:
        return unknown
    changes = _git(directory, "status", "--porcelain", "--untracked-files=no", git=git)
    return {"commit": commit, "dirty": None if changes is None else bool(changes), "source": directory}


def package_versions(names=PACKAGES) -> dict:
    """name -> installed version (None when not installed), from the installed distributions' metadata."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def parse_cpuinfo(text: str) -> dict:
    """CPU model and SIMD flags from the text of /proc/cpuinfo (its first processor's entry).

    Returns ``{"model": str or None, "simd_flags": [...]}``: the model from x86's 'model name' (or Arm's
    'Hardware'/'CPU part' when there is none) and those of `SIMD_FLAGS` the CPU has, in that order.
    """
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key not in fields:  # the first processor's entry; all cores of a machine agree
            fields[key] = value.strip()
    model = fields.get("model name") or fields.get("hardware") or fields.get("cpu part")
    present = set((fields.get("flags") or fields.get("features") or "").split())
    return {"model": model or None, "simd_flags": [flag for flag in SIMD_FLAGS if flag in present]}


def cpu_info(path: str = "/proc/cpuinfo") -> dict:
    """`parse_cpuinfo` of `path` plus the logical CPU count; model and flags None where it is unreadable."""
    try:
        with open(path, errors="replace") as f:
            info = parse_cpuinfo(f.read())
    except OSError:
        info = {"model": platform.processor() or None, "simd_flags": None}
    return {**info, "logical_cpus": os.cpu_count()}


def jax_info() -> dict:
    """JAX's backend, the kind and number of its devices (all processes and this one's), process count."""
    import jax  # late: the run has initialized JAX (and the distributed system) before asking

    devices = jax.devices()
    return {"backend": jax.default_backend(), "device_kind": devices[0].device_kind if devices else None,
            "device_count": jax.device_count(), "local_device_count": jax.local_device_count(),
            "process_count": jax.process_count()}


def source_directory() -> str:
    """The directory of the `superfed_jax` package this process runs (whose commit is recorded)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def collect(from_round: int, directory: Optional[str] = None) -> dict:
    """One session's provenance: a run starting (from_round 0) or resuming after `from_round` rounds."""
    return {
        "from_round": int(from_round),
        "started_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": git_state(directory or source_directory()),
        # From the running package (importing it here would point the import graph upward).
        "packages": {"superfed_jax": getattr(sys.modules.get("superfed_jax"), "__version__", None),
                     **package_versions()},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "platform": {"system": platform.system(), "release": platform.release(),
                     "machine": platform.machine(), "platform": platform.platform()},
        "jax": jax_info(),
        "cpu": cpu_info(),
    }


def kept_sessions(previous: list, from_round: int) -> list:
    """The earlier sessions that computed rounds still kept when the run continues after `from_round`."""
    return [s for s in previous if isinstance(s, dict) and s.get("from_round", from_round) < from_round]


def read_sessions(path: str) -> tuple[list, Optional[str]]:
    """(the sessions in the provenance file at `path`, a problem or None); ([], None) if there is none.

    A damaged file is not an error (provenance never stops a run): its sessions are reported as lost.
    """
    if not os.path.exists(path):
        return [], None
    try:
        with open(path) as f:
            sessions = json.load(f)["sessions"]
        if not isinstance(sessions, list):
            raise TypeError("'sessions' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as error:
        return [], f"{path} was unreadable ({error}); its earlier sessions are lost"
    return sessions, None


def record_session(workdir: str, from_round: int, session: Optional[dict] = None) -> dict:
    """Appends this session (`collect(from_round)` unless given) to WORKDIR/provenance.json; returns it.

    Sessions that started at or after `from_round` are dropped first (see the module docstring). The
    file is replaced atomically.
    """
    path = os.path.join(workdir, PROVENANCE_FILE)
    previous, problem = read_sessions(path)
    if problem:
        print(f"warning: {problem}", file=sys.stderr, flush=True)
    session = session if session is not None else collect(from_round)
    content = {"sessions": kept_sessions(previous, from_round) + [session]}
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(content, f, indent=2)
    os.replace(temporary, path)
    return content
