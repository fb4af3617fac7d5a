"""Measured inference latency of dense subnets on the machine running the code, cached per arch.

A latency budget (docs/algorithm.md section 9: "latency measured on the target") is met by the subnet as it
will be deployed: sliced out of the supernet (`Family.extract`) and run as the standalone dense subnet
(`Family.dense_apply`), not the masked supernet (which always costs as much as the largest subnet). One
measurement compiles the dense program (excluded from the time), runs `warmup` untimed calls, then times
`repeats` calls and takes the median, which is robust to the occasional descheduled call.

Latency depends on the machine, the backend, the batch size and the convolution implementation, so a
cache entry is keyed by all of them and by the arch; the cache lives in memory and in a JSON file (by
default RUN_DIR/latency_cache.json), so a second search on the same machine measures nothing twice.
"""
import json
import os
import platform
import statistics
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from superfed_jax import _json_file
from superfed_jax.supernet import archs as archs_lib
from superfed_jax.supernet import family as family_lib

CACHE_FILE = "latency_cache.json"


class LatencySettings(NamedTuple):
    """How latency is measured; every field but the repeat counts is part of the cache key."""

    batch_size: int = 1  # examples (images, token windows) per forward call
    warmup: int = 3  # untimed calls after compilation
    repeats: int = 20  # timed calls; the median is reported
    conv_impl: str = "im2col"  # convolution implementation of the dense subnet (see conv.py)


def check_settings(settings: LatencySettings) -> None:
    """Raises ValueError naming the first bad field of `settings`."""
    for name in ("batch_size", "repeats"):
        if getattr(settings, name) < 1:
            raise ValueError(f"latency {name}={getattr(settings, name)}: must be at least 1")
    if settings.warmup < 0:
        raise ValueError(f"latency warmup={settings.warmup}: must be at least 0")


def median_ms(fn: Callable, args: tuple, warmup: int, repeats: int) -> float:
    """Median wall time in milliseconds of `fn(*args)` over `repeats` calls after `warmup` calls.

    Every call is waited for (`block_until_ready`), so asynchronous dispatch cannot hide device time.
    """
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def input_spec(family: family_lib.Family, batch_size: int) -> jax.ShapeDtypeStruct:
    """The shape and dtype of a batch of `batch_size` inputs of the family: float32 images, int32 tokens."""
    dtype = jnp.int32 if family.batch_kind == family_lib.TOKENS else jnp.float32
    return jax.ShapeDtypeStruct((batch_size, *family.data_shape.input_shape), dtype)


def timed_family(family: family_lib.Family, conv_impl: str) -> family_lib.Family:
    """The family as latency is measured: float32 compute with the settings' convolution implementation
    (rebuilt from its space, so any family works)."""
    return type(family).from_config(family.space_dict(), conv_impl=conv_impl, dtype="float32")


def measure_ms(family: family_lib.Family, params, arch, settings: LatencySettings, device=None) -> float:
    """Median forward latency (ms per batch) of the dense subnet of one concrete arch.

    Args:
      family: the supernet family (its conv_impl and dtype are replaced: `timed_family`).
      params: supernet params (the subnet's are sliced out of them).
      arch: one concrete arch.
      settings: batch size, repeat counts and convolution implementation.
      device: where to run; default the first device of the default backend.

    Returns:
      Milliseconds per forward call of `settings.batch_size` examples, compilation excluded.
    """
    device = device or jax.devices()[0]
    timed = timed_family(family, settings.conv_impl)
    dense = jax.device_put(timed.extract(params, arch), device)
    spec = input_spec(timed, settings.batch_size)
    inputs = jax.device_put(jnp.zeros(spec.shape, spec.dtype), device)
    forward = jax.jit(lambda p, x: timed.dense_apply(p, x, arch)).lower(dense, inputs).compile()
    return median_ms(forward, (dense, inputs), settings.warmup, settings.repeats)


def machine_key(settings: LatencySettings, device=None) -> str:
    """What a measurement depends on besides the arch: host, device, batch size, convolution."""
    device = device or jax.devices()[0]
    return (f"host={platform.node()}|device={device.platform}:{device.device_kind}"
            f"|batch={settings.batch_size}|conv={settings.conv_impl}")


def arch_key(family: family_lib.Family, arch) -> str:
    """The canonical JSON text of an arch (equal subnets give equal keys)."""
    return archs_lib.arch_text(family, arch)


def load_cache(path: str) -> dict:
    """The cache file's entries ({machine key: {arch key: ms}}), or {} when there is no file yet."""
    if not path or not os.path.exists(path):
        return {}
    return _json_file.read_object(path, "it only caches timings: delete it to measure them again")


def save_cache(path: str, cache: dict) -> None:
    """Writes the cache atomically (a temporary file renamed), so an interrupted write loses nothing."""
    if not path:
        return
    temporary = f"{path}.tmp"
    with open(temporary, "w") as f:
        json.dump(cache, f, indent=1, sort_keys=True)
    os.replace(temporary, path)


def make_latency_fn(family: family_lib.Family, params, settings: LatencySettings,
                    cache_path: str = "", device=None) -> Callable:
    """Builds `latency_fn(archs) -> float64 [...]` (ms) for a batch of concrete archs (any leading axes),
    cached per arch.

    Only archs missing from the cache (in memory, seeded from `cache_path`) are measured; the file is
    rewritten after every call that measured something.
    """
    check_settings(settings)
    device = device or jax.devices()[0]
    params = jax.device_put(params, device)
    cache = load_cache(cache_path)
    entries = cache.setdefault(machine_key(settings, device), {})

    def latency_fn(archs) -> np.ndarray:
        genes = family_lib.to_genes(family, archs)
        flat = genes.reshape(-1, genes.shape[-1])
        values, measured = [], False
        for arch in family_lib.unstack(family_lib.from_genes(family, flat)):
            key = arch_key(family, arch)
            if key not in entries:
                entries[key] = measure_ms(family, params, arch, settings, device)
                measured = True
            values.append(entries[key])
        if measured:
            save_cache(cache_path, cache)
        return np.asarray(values, np.float64).reshape(genes.shape[:-1])

    return latency_fn
