"""Device memory of one federated round, estimated from known sizes before anything compiles.

A round trains `fl.clients_per_round` (P) clients, `fl.chunk_size` (C) of them at once: the round is a
`lax.scan` over P / C chunks, and the clients of a chunk are trained together (a `vmap` batch axis split
over the devices of the `clients` mesh axis, or side-by-side subgraphs on one device). Memory therefore
grows with C, not with P: a large P costs time, not memory.

Memory per device (`estimate_round_memory`):

* fixed: the supernet params of the server state, the aggregation sums carried across chunks (a
  float32 numerator per parameter) and the new params (`params_bytes` each), the server optimiser's
  state (`server_slots` params-sized copies, `server_optimizer.state_slots`: none for the paper's mean,
  2 for Adam's and Yogi's moments), plus the device's share of the training rows and the replicated
  index table (`data_bytes`, passed in).
* per client in flight, ceil(C / devices) of them per device:
    - its params (a full-size copy of the supernet: masked clients still hold every weight),
    - their gradient, and the updated params before the old ones are released (one copy each),
    - the optimizer state (`optimizer_slots` copies; plain SGD with clipping, the paper's optimizer, has
      none; a run's client options add theirs, `client_optimizer.state_slots`: momentum one, the subnet
      mask read by weight decay or the proximal term one),
    - a copy of the params in the compute dtype when it differs from the params dtype (bfloat16),
    - the activations of one batch: the family's count per example (`Family.activation_elements`) at
      `batch_size` in the compute dtype. For the OFA-ResNet that is every feature map of the *supernet*
      forward pass (the masked supernet computes max-width tensors whatever the arch, so this is the
      largest arch), plus the backward pass's working set (the gradient of the largest feature map and
      of its input) and, for "im2col" convolutions, the k*k channel expansion of every convolution
      (kept from the forward for the weight gradient; the largest one for "xla_mmgrad").
  The per-client term is dominated by the params-sized copies (3 x params bytes in float32) for wide
  nets at small batches, and by activations for large batches or images.

Choosing the chunk size: the largest divisor C of P whose estimate fits the device (`suggest_chunk_size`;
`check_round_memory` raises with it). Larger C means fewer sequential scan steps (faster, more parallel
work per step) and more memory; on a mesh of D devices a C that is a multiple of D keeps every device
busy. Example, the paper's CIFAR-10 space (71.7M params, 287 MB in float32) at batch 64, float32, "xla"
convolutions: 0.8 GiB of params-sized copies and 2.1 GiB of activations, 2.9 GiB per client, so P = 8
in one chunk needs about 24 GiB and an 80 GB accelerator holds about 25 clients in flight (bfloat16:
2.0 GiB per client). Print the estimate of a config:

    python -m superfed_jax.run.memory --config=configs/cifar10.py [--devices=8] [--available_gib=16]
    superfed-memory --config=cifar10 --json      # the same, one JSON object of byte counts

The estimate is meant to be within a small factor of what XLA allocates, not exact: XLA fuses, re-uses
and rematerializes buffers. Measured against XLA:CPU's analysis of compiled rounds (32x32x3 inputs,
batch 64): 1.07x for "im2col" in float32, 0.91x in bfloat16, 1.7x (conservative) for "xla"
convolutions; 1.35-1.7x for the paper space at batch 16-8 (benchmarks/RESULTS.md). `compiled_peak_bytes` reads XLA's own analysis of a compiled round (tests/test_memory.py
compares the two on a tiny round). Device capacity comes from `device_memory_bytes`:
the allocator's `bytes_limit` on GPU/TPU, and on CPU a configurable value (default: the host's
available RAM shared by the local CPU devices).
"""
import json
import math
import os
from typing import Any, Optional

import jax
import numpy as np
from absl import flags
from ml_collections import config_flags

from superfed_jax import _console
from superfed_jax import _cli
from superfed_jax import _readable
from superfed_jax import config as config_lib
from superfed_jax import validation
from superfed_jax.federated import client_optimizer
from superfed_jax.federated import server_optimizer
from superfed_jax.supernet import family as family_lib


def params_bytes(family: family_lib.Family, param_dtype: Any = "float32") -> int:
    """Bytes of the supernet params (every weight, the largest arch) in `param_dtype`."""
    count = family.params(family.largest())
    return count * np.dtype(param_dtype).itemsize


def clients_in_flight(chunk_size: int, num_devices: int) -> int:
    """Clients one device trains at once: a chunk's clients are split over the `clients` mesh axis."""
    return -(-chunk_size // num_devices)


def estimate_round_memory(family: family_lib.Family, *, batch_size: int, chunk_size: int,
                          clients_per_round: Optional[int] = None, num_devices: int = 1,
                          dtype: Any = "float32", param_dtype: Any = "float32",
                          optimizer_slots: int = 0, server_slots: int = 0, data_bytes: int = 0) -> dict:
    """Estimated peak device memory of one round, per device, with its parts (module docstring).

    Args:
      family: the supernet family (its shapes, and its `conv_impl` where the activations depend on it:
        `Family.activation_elements`).
      batch_size: local batch size (`client.batch_size`).
      chunk_size: clients trained at once (`fl.chunk_size`; 0 means all `clients_per_round`).
      clients_per_round: P; needed only when `chunk_size` is 0.
      num_devices: devices of the `clients` mesh axis (a chunk's clients are split over them).
      dtype: compute dtype of convolutions and matmuls (`model.dtype`).
      param_dtype: dtype of the params, gradients and optimizer state (float32 in this codebase).
      optimizer_slots: params-sized optimizer state buffers (0 for plain SGD, 1 for momentum).
      server_slots: params-sized buffers of the server optimiser's state (0 for the mean, 2 for Adam).
      data_bytes: bytes of the training set one device holds (`data_bytes(client_data)`).

    Returns:
      A dict of integer byte counts: `total_bytes` (per device), `fixed_bytes`, `per_client_bytes`,
      `clients_in_flight`, and the parts (`params_bytes`, `per_client` breakdown, `data_bytes`,
      `activation_elements_per_example`).
    """
    if chunk_size == 0:
        if not clients_per_round:
            raise ValueError("chunk_size=0 means all clients of a round: pass clients_per_round")
        chunk_size = clients_per_round
    p_bytes = params_bytes(family, param_dtype)
    compute_size, param_size = np.dtype(dtype).itemsize, np.dtype(param_dtype).itemsize
    elements = family.activation_elements()
    per_client = {
        "params": p_bytes,
        "gradients": p_bytes,
        "updated_params": p_bytes,
        "optimizer_state": optimizer_slots * p_bytes,
        "compute_dtype_params": 0 if compute_size == param_size else p_bytes // param_size * compute_size,
        "activations": elements * batch_size * compute_size,
    }
    in_flight = clients_in_flight(chunk_size, num_devices)
    fixed = {"state_params": p_bytes, "aggregation_sums": p_bytes // param_size * 4,
             "new_params": p_bytes, "server_optimizer_state": server_slots * p_bytes,
             "data": int(data_bytes)}
    per_client_bytes = sum(per_client.values())
    fixed_bytes = sum(fixed.values())
    return {
        "total_bytes": fixed_bytes + in_flight * per_client_bytes,
        "fixed_bytes": fixed_bytes,
        "per_client_bytes": per_client_bytes,
        "clients_in_flight": in_flight,
        "chunk_size": chunk_size,
        "params_bytes": p_bytes,
        "data_bytes": int(data_bytes),
        "activation_elements_per_example": elements,
        "fixed": fixed,
        "per_client": per_client,
    }


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def suggest_chunk_size(family: family_lib.Family, available_bytes: float, *, clients_per_round: int,
                       **kwargs) -> Optional[int]:
    """The largest divisor of `clients_per_round` whose estimate fits `available_bytes`; None if none does.

    `kwargs` are those of `estimate_round_memory` except `chunk_size`.
    """
    for chunk in reversed(_divisors(clients_per_round)):
        estimate = estimate_round_memory(family, chunk_size=chunk, clients_per_round=clients_per_round,
                                         **kwargs)
        if estimate["total_bytes"] <= available_bytes:
            return chunk
    return None


# What to do when not even one client per chunk fits (the check's message and the command's summary).
NO_FIT_ADVICE = ("even fl.chunk_size=1 does not fit: reduce client.batch_size, use model.dtype='bfloat16', "
                 "a smaller space, or more devices")


def check_round_memory(family: family_lib.Family, available_bytes: float, *, batch_size: int,
                       chunk_size: int, clients_per_round: int, **kwargs) -> dict:
    """Raises ValueError when the round's estimate exceeds `available_bytes`; returns the estimate otherwise.

    The message gives the estimate and its main parts, the available memory and the largest
    `fl.chunk_size` that fits (or, when even one client per chunk does not fit, what else to reduce).
    `kwargs` are the other arguments of `estimate_round_memory`.
    """
    estimate = estimate_round_memory(family, batch_size=batch_size, chunk_size=chunk_size,
                                     clients_per_round=clients_per_round, **kwargs)
    if estimate["total_bytes"] <= available_bytes:
        return estimate
    fits = suggest_chunk_size(family, available_bytes, clients_per_round=clients_per_round,
                              batch_size=batch_size, **kwargs)
    advice = (f"use --config.fl.chunk_size={fits} (the largest divisor of fl.clients_per_round="
              f"{clients_per_round} that fits)" if fits else NO_FIT_ADVICE)
    size = _readable.binary_bytes
    raise ValueError(
        f"one round needs an estimated {size(estimate['total_bytes'])} per device but "
        f"{size(available_bytes)} is available: fl.chunk_size={estimate['chunk_size']} puts "
        f"{estimate['clients_in_flight']} clients in flight per device at "
        f"{size(estimate['per_client_bytes'])} each (params, gradients and updates "
        f"{size(3 * estimate['params_bytes'])}, activations of a batch of {batch_size} "
        f"{size(estimate['per_client']['activations'])}), plus {size(estimate['fixed_bytes'])} fixed "
        f"(server params, aggregation sums, training data); {advice}")


def _host_available_bytes() -> int:
    """Available host RAM (`MemAvailable` of /proc/meminfo), else the physical RAM."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def device_memory_bytes(device=None, cpu_bytes: Optional[float] = None) -> int:
    """Memory one device can use for a round.

    Args:
      device: a JAX device (default: the first local device).
      cpu_bytes: for CPU devices, the host memory to share among the local CPU devices (default: the
        host's available RAM, or the `SUPERFED_CPU_MEMORY_BYTES` environment variable when set). Fake CPU
        devices (`--xla_force_host_platform_device_count`) share one host, so each gets a share.

    Returns:
      The allocator's `bytes_limit` where the backend reports one (GPU, TPU), else the CPU share.
    """
    device = jax.local_devices()[0] if device is None else device
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    if cpu_bytes is None:
        cpu_bytes = float(os.environ.get("SUPERFED_CPU_MEMORY_BYTES", 0)) or _host_available_bytes()
    sharing = max(1, sum(d.platform == device.platform for d in jax.local_devices()))
    return int(cpu_bytes // sharing)


def compiled_peak_bytes(compiled) -> Optional[int]:
    """Peak bytes XLA's memory analysis gives a compiled program: arguments + outputs - aliased + temps.

    `compiled` is `jax.jit(f).lower(...).compile()`. None where the backend has no analysis.
    """
    analysis = compiled.memory_analysis()
    if isinstance(analysis, (list, tuple)):  # older JAX: one analysis per program
        analysis = analysis[0] if analysis else None
    if analysis is None:
        return None
    return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes
               - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes)


def data_bytes(client_data) -> int:
    """Bytes of a `federated_round.FederatedData` (or any pytree of arrays) on one device.

    A sharded `jax.Array` counts one device's shard (the training rows are split over the devices).
    """
    def one_device(x):
        shape = x.sharding.shard_shape(x.shape) if isinstance(x, jax.Array) else x.shape
        return math.prod(shape) * np.dtype(x.dtype).itemsize
    return int(sum(one_device(x) for x in jax.tree.leaves(client_data)))


# ----------------------------------------------------------------------------------------------------
# Command line.

ABOUT = ("superfed-memory: the estimated device memory of one round of a config, per device, in binary units "
         "(GiB = 2**30 bytes), with the largest fl.chunk_size that fits.\n\n"
         "usage: superfed-memory [--config=FILE[:VARIANT]] [--devices=N] [--available_gib=GIB] "
         "[--train_examples=N] [--json]")


def config_estimate(config, family: family_lib.Family, *, num_devices: int, data_bytes: int = 0) -> dict:
    """`estimate_round_memory` with the arguments a run's config gives (`fl`, `client`, `model`); the
    family is the config's (`config.make_family`, which binds `model.conv_impl`)."""
    return estimate_round_memory(
        family, batch_size=config.client.batch_size, chunk_size=config.fl.chunk_size,
        clients_per_round=config.fl.clients_per_round, num_devices=num_devices, dtype=config.model.dtype,
        optimizer_slots=client_optimizer.state_slots(config.client),
        server_slots=server_optimizer.state_slots(config.get("server", {})), data_bytes=data_bytes)


def command_line_problems(config, devices: int, available_gib: float, train_examples: int) -> list[str]:
    """The problems of the memory command's config and flags, one line each ([] if none).

    The config goes through the same validation as a run (`validation.check_config`), except that the
    data files need not exist here: the estimate reads no data.
    """
    problems = []
    try:
        validation.check_config(config, check_files=False)
    except ValueError as error:
        problems.extend(str(error).splitlines())
    if devices < 1:
        problems.append(f"--devices={devices}: must be an integer >= 1")
    if not (math.isfinite(available_gib) and available_gib >= 0):
        problems.append(f"--available_gib={available_gib}: must be a number >= 0 (0 = ask the device)")
    if train_examples < 0:
        problems.append(f"--train_examples={train_examples}: must be an integer >= 0")
    return problems


# What the estimate's parts are, for the summary (their keys stay the JSON's).
_PART_NAMES = {"params": "params", "gradients": "gradients", "updated_params": "updated params",
               "optimizer_state": "optimizer state", "compute_dtype_params": "params in the compute dtype",
               "activations": "activations of a batch", "state_params": "server params",
               "aggregation_sums": "aggregation sums", "new_params": "new params",
               "server_optimizer_state": "server optimizer state", "data": "training data"}


def summary_text(estimate: dict) -> str:
    """The memory command's summary of `estimate` (`estimate_round_memory` with `available_bytes` and
    `suggested_chunk_size` added): the total against the memory available, the parts, the advice."""
    total, available = estimate["total_bytes"], estimate["available_bytes"]
    verdict = "fits" if total <= available else "does not fit"
    lines = [f"one round needs about {_readable.binary_bytes(total)} per device; "
             f"{_readable.binary_bytes(available)} available: {verdict}",
             f"  per client: {_readable.binary_bytes(estimate['per_client_bytes'])} x "
             f"{estimate['clients_in_flight']} in flight per device (fl.chunk_size={estimate['chunk_size']})"]
    width = max(len(name) for name in _PART_NAMES.values())
    lines += [f"    {_PART_NAMES.get(key, key):<{width}}  {_readable.binary_bytes(value)}"
              for key, value in estimate["per_client"].items()]
    lines.append(f"  fixed: {_readable.binary_bytes(estimate['fixed_bytes'])}")
    lines += [f"    {_PART_NAMES.get(key, key):<{width}}  {_readable.binary_bytes(value)}"
              for key, value in estimate["fixed"].items()]
    suggested = estimate["suggested_chunk_size"]
    lines.append(f"largest fl.chunk_size that fits: {suggested}" if suggested else NO_FIT_ADVICE)
    return "\n".join(lines)


def main(argv) -> None:
    """Prints the estimate of a config's round, with the largest chunk size that fits: a summary in binary
    units, or (--json) one JSON object of byte counts."""
    del argv
    config, args = flags.FLAGS.config, flags.FLAGS
    problems = command_line_problems(config, args.devices, args.available_gib, args.train_examples)
    if problems:
        _cli.fail("\n".join(problems))
    family = config_lib.make_family(config)
    example_bytes = math.prod(family.data_shape.input_shape)  # uint8 images
    estimate = config_estimate(config, family, num_devices=args.devices,
                               data_bytes=args.train_examples * (example_bytes + 4))
    # Without --available_gib: the default device of this machine (the allocator's limit on GPU/TPU).
    available = args.available_gib * 2**30 if args.available_gib else device_memory_bytes()
    estimate["available_bytes"] = int(available)
    estimate["suggested_chunk_size"] = suggest_chunk_size(
        family, available, clients_per_round=config.fl.clients_per_round,
        batch_size=config.client.batch_size, num_devices=args.devices, dtype=config.model.dtype,
        data_bytes=estimate["data_bytes"])
    print(_readable.json_line(estimate) if args.json else summary_text(estimate))


def _define_flags() -> None:
    # Only when run as a program, so importing this module defines no flags (as in cost.py).
    # The packaged default, not 'configs/digits.py': that relative path exists only in the repository root.
    config_flags.DEFINE_config_file("config", os.path.join(_cli.PACKAGED_CONFIGS, "digits.py"),
                                    "Experiment config (a file, or a packaged name: digits, cifar10, ...).",
                                    lock_config=True)
    flags.DEFINE_integer("devices", 1, "Devices of the clients mesh axis.")
    flags.DEFINE_float("available_gib", 0.0, "Device memory in GiB; 0 = query this machine's device.")
    flags.DEFINE_integer("train_examples", 0, "Training examples kept on device (uint8 images).")
    _cli.define_json_flag()


def console() -> None:
    """The `superfed-memory` command: the same as `python -m superfed_jax.run.memory`."""
    _console.quiet_backend_probe()
    _cli.run(main, _define_flags, argv_checks=[validation.config_file_problem], config_flag=True, about=ABOUT)


if __name__ == "__main__":
    console()
