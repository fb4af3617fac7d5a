"""JAX's persistent compilation cache for the package's commands: a program is compiled once per machine.

A run's round and evaluation take tens of seconds to a few minutes to compile on a CPU, every time a
process starts: a resumed run, a second run of the same config, a `:smoke` try. JAX can keep compiled
programs on disk and load them in the next process that compiles the same program on the same kind of
device; this module turns that on by default and says where.

Where the cache lives, first rule that applies:

1. `compilation_cache='off'` (the training config's field): no cache;
2. JAX_ENABLE_COMPILATION_CACHE=false (or 0, no, off) in the environment, JAX's own switch: no cache, for
   every command;
3. `compilation_cache=DIR`: DIR (`~` expanded, relative to the working directory);
4. JAX_COMPILATION_CACHE_DIR in the environment, JAX's own variable: that directory;
5. the default, `$XDG_CACHE_HOME/superfed_jax/xla` (`~/.cache/superfed_jax/xla` without XDG_CACHE_HOME).

The training command applies its config's field (`superfed_jax.run.launch`); the post-training commands
that compile (`superfed-search`, `superfed-export`, `superfed-evaluate`) have no config of their own and
apply the default setting '' (rules 2, 4 and 5). `enable` must run before the process's first compilation:
JAX decides once per process whether the cache is used.

Every program is written, however quickly it compiled (`MIN_COMPILE_SECONDS`, unless
JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS says otherwise): JAX's default of 1 s would leave out the
evaluation of a small run on a fast machine, and a threshold in between is crossed or not by the same
one-operation program depending on the machine's load. On the project's 2-core AMD EPYC machine a
`:smoke` run writes 34 entries, 1.3 MB (the round 0.6 MB, the initialisation 0.3 MB, the two evaluations
and the assignment schedule 0.1 MB each; 29 one-operation programs of 2-3 KB), and a second run writes
none. A program is looked up by a hash of itself, the JAX version and the device, so a changed config or
another JAX version simply compiles anew. Nothing is ever removed: deleting the directory is always safe
(the next run compiles again).

`counting()` counts the cache's hits in a block: the progress line says when the round and the evaluation
were loaded rather than compiled. Imports JAX only inside its functions; nothing of the package.
"""
import contextlib
import dataclasses
import os
import sys
from collections.abc import Mapping
from typing import Optional

__all__ = ["OFF", "DIR_VARIABLE", "ENABLE_VARIABLE", "MIN_COMPILE_TIME_VARIABLE", "MIN_COMPILE_SECONDS",
           "SUBDIRECTORY", "default_directory", "resolve", "setting_problem", "enable", "Lookups",
           "counting"]

OFF = "off"
DIR_VARIABLE = "JAX_COMPILATION_CACHE_DIR"
ENABLE_VARIABLE = "JAX_ENABLE_COMPILATION_CACHE"
MIN_COMPILE_TIME_VARIABLE = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
MIN_COMPILE_SECONDS = 0.0
SUBDIRECTORY = os.path.join("superfed_jax", "xla")  # under the user's cache directory
# What JAX reads as False in an environment variable (jax/_src/config.py, bool_env).
_FALSE_WORDS = ("n", "no", "f", "false", "off", "0")
# Values that mean "no cache" to a reader but would name a directory in the working directory.
_LOOKS_LIKE_OFF = ("false", "none", "no", "0", "disable", "disabled", "null")
_HIT = "/jax/compilation_cache/cache_hits"
_LOOKUP = "/jax/compilation_cache/compile_requests_use_cache"


def default_directory(environ: Mapping[str, str] = os.environ) -> str:
    """The default cache directory: SUBDIRECTORY under $XDG_CACHE_HOME, or under ~/.cache without it.

    An XDG_CACHE_HOME that is empty or relative is ignored, as the XDG base directory specification asks.
    """
    base = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".cache")
    return os.path.join(base, SUBDIRECTORY)


def _switched_off(environ: Mapping[str, str]) -> bool:
    """Whether JAX_ENABLE_COMPILATION_CACHE turns JAX's cache off."""
    return environ.get(ENABLE_VARIABLE, "").strip().lower() in _FALSE_WORDS


def resolve(setting: str, environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """The absolute cache directory for `setting` (the `compilation_cache` field: '', 'off' or a
    directory) and `environ`, or None for no cache; the rules are in this module's documentation."""
    if setting == OFF or _switched_off(environ):
        return None
    if setting:
        return os.path.abspath(os.path.expanduser(setting))
    return os.path.abspath(os.path.expanduser(environ.get(DIR_VARIABLE) or default_directory(environ)))


def setting_problem(setting, check_files: bool = True) -> Optional[str]:
    """The one-line message when `setting` cannot be a `compilation_cache` value, else None.

    A string is needed; a word that reads as "off" ('false', 'none', 'OFF', ...) is refused with
    'off' suggested, since it would otherwise name a directory of that name; with `check_files`, a path
    that exists and is not a directory is refused (nothing could be cached there).
    """
    allowed = "allowed '' (the default directory), 'off' or a directory"
    if not isinstance(setting, str):
        return f"compilation_cache={setting!r}: must be a string; {allowed}"
    if setting != OFF and setting.strip().lower() in _LOOKS_LIKE_OFF + (OFF,):
        return f"compilation_cache={setting!r}: {allowed} (did you mean 'off'?)"
    if check_files and setting and setting != OFF:
        path = os.path.expanduser(setting)
        if os.path.exists(path) and not os.path.isdir(path):
            return f"compilation_cache={setting!r}: is not a directory; {allowed}"
    return None


def enable(setting: str = "", environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """Points JAX's persistent compilation cache at `resolve(setting, environ)`; returns that directory,
    or None when the cache is off.

    Call it before the process compiles anything. 'off' also switches JAX's cache off, so a
    JAX_COMPILATION_CACHE_DIR in the environment is not used either. A directory that cannot be made
    (a read-only home) is one warning on stderr, and the command goes on without a cache.
    """
    import jax

    directory = resolve(setting, environ)
    if directory is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        print(f"warning: compilation cache off: cannot make {directory} ({error.strerror or error}); "
              "every program is compiled anew", file=sys.stderr, flush=True)
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_compilation_cache_dir", directory)
    if MIN_COMPILE_TIME_VARIABLE not in environ:  # a value given to JAX itself is left as given
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return directory


@dataclasses.dataclass
class Lookups:
    """The programs compiled in a `counting()` block that were looked up in the cache, and found."""

    requests: int = 0
    hits: int = 0

    def note(self) -> str:
        """'loaded from the compilation cache' (every program), '1 of 3 programs loaded from ...', or ''
        (none: compiled, or no cache)."""
        if not self.hits:
            return ""
        if self.hits == self.requests:
            return "loaded from the compilation cache"
        return f"{self.hits} of {self.requests} programs loaded from the compilation cache"


@contextlib.contextmanager
def counting():
    """Counts, as the `Lookups` it yields, the cache lookups and hits of the compilations in the block
    (from JAX's monitoring events; none when the cache is off)."""
    from jax import monitoring

    lookups = Lookups()

    def listen(event: str, **_) -> None:
        if event == _LOOKUP:
            lookups.requests += 1
        elif event == _HIT:
            lookups.hits += 1

    monitoring.register_event_listener(listen)
    try:
        yield lookups
    finally:
        monitoring.unregister_event_listener(listen)
