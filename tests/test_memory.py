"""Tests for superfed_jax.run.memory: the round's device-memory estimate, the check and the device query.

The estimate is checked against sizes counted by hand for the tiny space of tiny_setup.py, the check
against its own suggestion, and the whole estimate against XLA's memory analysis of a compiled round.
"""
import re

import jax
import ml_collections
import numpy as np
import pytest

import tiny_setup as T
from superfed_jax.federated import client
from superfed_jax.federated import objective
from superfed_jax.federated import round as fr
from superfed_jax.federated import sharding
from superfed_jax.run import memory
from superfed_jax.supernet.ofa_resnet.family import OFAResNet


def family(conv_impl="im2col"):
    """The tiny space as the family of a run with `model.conv_impl=conv_impl` (it binds the impl)."""
    return OFAResNet(T.SPACE, conv_impl)

# Tiny space: stem 4, stages of widths (8, 16) with 2 blocks each, max mids (8, 16), 4x4x1 inputs, 3 classes.
# Params: stem 9*1*4 = 36; stage 0: 9*4*8 + 9*8*8 + 4*8 (shortcut) + 2 * 9*8*8 = 2048;
# stage 1: 9*8*16 + 9*16*16 + 8*16 + 2 * 9*16*16 = 8192; head 16*3 + 3 = 51. Total 10,327.
HAND_PARAMS = 36 + 2048 + 8192 + 51
# Feature maps per example: input 4*4*1 = 16; stem conv + ReLU 2*4*4*4 = 128;
# stage 0 (4x4): block 0 conv1, relu, conv2, relu, shortcut, add, relu = 7 maps of 8 channels = 896,
#   block 1 the same without shortcut, plus the identity select = 896;
# stage 1 (2x2): block 0 4 maps of 16 + average pool of 8 + shortcut 16 + add/relu 2*16 = 120 channels
#   * 4 = 480, block 1 7 * 16 * 4 = 448.
HAND_MAPS = 16 + 128 + 896 + 896 + 480 + 448
HAND_HEAD = 16 + 2 * 3
HAND_WORKING = 2 * 128  # twice the largest map (8 channels at 4x4)
# im2col expansions, 9 * narrow channels at that side's resolution: stem 9*1*16 = 144; stage 0:
# 9*4*16 = 576 and 3 * 9*8*16 = 3456; stage 1: 9*8*2*2 = 288 and 3 * 9*16*2*2 = 1728.
HAND_EXPANSIONS = 144 + 576 + 3456 + 288 + 1728


def test_params_and_activation_elements_by_hand():
    assert memory.params_bytes(family()) == 4 * HAND_PARAMS
    assert memory.params_bytes(family(), "bfloat16") == 2 * HAND_PARAMS
    assert family("xla").activation_elements() == HAND_MAPS + HAND_HEAD + HAND_WORKING
    assert family("im2col").activation_elements() == (HAND_MAPS + HAND_HEAD + HAND_WORKING
                                                      + HAND_EXPANSIONS)
    assert family("xla_mmgrad").activation_elements() == (HAND_MAPS + HAND_HEAD + HAND_WORKING
                                                          + 1152)


def test_estimate_by_hand():
    estimate = memory.estimate_round_memory(family("im2col"), batch_size=8, chunk_size=4,
                                            clients_per_round=8, num_devices=2, data_bytes=1000)
    params = 4 * HAND_PARAMS
    activations = 8 * 4 * (HAND_MAPS + HAND_HEAD + HAND_WORKING + HAND_EXPANSIONS)
    per_client = 3 * params + activations  # params, gradients, updated params; SGD has no state
    assert estimate["per_client_bytes"] == per_client
    assert estimate["clients_in_flight"] == 2  # a chunk of 4 split over 2 devices
    assert estimate["fixed_bytes"] == 3 * params + 1000
    assert estimate["total_bytes"] == 3 * params + 1000 + 2 * per_client


def test_estimate_dtype_optimizer_and_whole_round_chunk():
    estimate = memory.estimate_round_memory(family("xla"), batch_size=8, chunk_size=0,
                                            clients_per_round=6, dtype="bfloat16", optimizer_slots=1)
    params = 4 * HAND_PARAMS
    assert estimate["chunk_size"] == 6 and estimate["clients_in_flight"] == 6
    assert estimate["per_client"]["compute_dtype_params"] == 2 * HAND_PARAMS
    assert estimate["per_client"]["optimizer_state"] == params
    assert estimate["per_client"]["activations"] == 8 * 2 * (HAND_MAPS + HAND_HEAD + HAND_WORKING)
    with pytest.raises(ValueError, match="clients_per_round"):
        memory.estimate_round_memory(family(), batch_size=8, chunk_size=0)


def test_check_raises_with_a_chunk_size_that_fits():
    kwargs = dict(batch_size=8, clients_per_round=8, num_devices=1)
    sizes = {c: memory.estimate_round_memory(family("im2col"), chunk_size=c, **kwargs)["total_bytes"]
             for c in (1, 2, 4, 8)}
    available = (sizes[2] + sizes[4]) / 2  # chunks of 2 fit, chunks of 4 do not
    with pytest.raises(ValueError) as error:
        memory.check_round_memory(family("im2col"), available, chunk_size=8, **kwargs)
    message = str(error.value)
    assert "MiB" in message and "fl.chunk_size=8" in message
    suggested = int(re.search(r"--config\.fl\.chunk_size=(\d+)", message).group(1))
    assert suggested == 2
    assert memory.check_round_memory(family("im2col"), available, chunk_size=suggested, **kwargs)[
        "total_bytes"] <= available
    # Not even one client fits: the message says what else to reduce.
    with pytest.raises(ValueError, match="even fl.chunk_size=1 does not fit"):
        memory.check_round_memory(family("im2col"), sizes[1] - 1, chunk_size=2, **kwargs)


def test_suggestion_is_a_divisor_of_clients_per_round():
    kwargs = dict(batch_size=8, num_devices=1)
    sizes = {c: memory.estimate_round_memory(family(), chunk_size=c, **kwargs)["total_bytes"]
             for c in (1, 2, 3, 4, 6)}
    # P = 6: 4 fits but does not divide 6, so the suggestion is 3.
    assert memory.suggest_chunk_size(family(), sizes[4], clients_per_round=6, **kwargs) == 3
    assert memory.suggest_chunk_size(family(), sizes[1] - 1, clients_per_round=6, **kwargs) is None


def test_device_memory_on_fake_cpu_devices(monkeypatch):
    devices = jax.local_devices()
    assert devices[0].platform == "cpu" and len(devices) == 8
    assert memory.device_memory_bytes(cpu_bytes=8e9) == 1_000_000_000  # 8 fake devices share the host
    monkeypatch.setenv("SUPERFED_CPU_MEMORY_BYTES", "16e9")
    assert memory.device_memory_bytes() == 2_000_000_000
    monkeypatch.delenv("SUPERFED_CPU_MEMORY_BYTES")
    assert memory.device_memory_bytes() > 0  # the host's available RAM


def test_data_bytes():
    data = fr.FederatedData(np.zeros((10, 4, 4, 1), np.uint8), np.zeros(10, np.int32),
                         np.zeros((2, 5), np.int32), np.zeros(2, np.int32))
    assert memory.data_bytes(data) == 160 + 40 + 40 + 8


def compiled_round(chunk_size, num_devices):
    """The tiny round (P 4, batch 8, im2col, vmap layout) compiled, not run."""
    images, labels = T.make_data()
    table, sizes = T.index_table()
    data_config = ml_collections.ConfigDict(dict(crop_padding=1, flip=True, cutout_size=0))
    update = client.make_client_update(objective.make_loss_fn(T.FAMILY, T.MEAN, T.STD, data_config),
                                       client.make_optimizer(0.1, 1.0), epochs=1, batch_size=8,
                                       max_size=int(table.shape[1]))
    settings = fr.RoundSettings(num_clients=T.NUM_CLIENTS, clients_per_round=4, chunk_size=chunk_size,
                                heuristic="tracking_sandwich", pool=None, count_random_extremes=True,
                                beta_schedule="cosine", beta0=0.9, beta_final=0.25, decay_rounds=4)
    mesh = sharding.make_mesh(jax.devices()[:num_devices])
    round_fn = fr.make_round_fn(T.FAMILY, settings, client.vmap_clients(update), mesh)
    state = fr.init_state(T.as_jnp(T.init_params()), 0, T.NUM_CLIENTS)
    data = fr.FederatedData(images, labels, table, sizes)
    compiled = jax.jit(round_fn, donate_argnums=0).lower(state, data).compile()
    return compiled, memory.data_bytes(data)


def test_estimate_tracks_xla_memory_analysis():
    """Within 2x of XLA:CPU's own analysis (about 1.3x here), and per device it follows the chunk split."""
    peaks, estimates = {}, {}
    for devices in (1, 2):
        compiled, data_bytes = compiled_round(4, devices)
        peaks[devices] = memory.compiled_peak_bytes(compiled)
        estimates[devices] = memory.estimate_round_memory(
            family("im2col"), batch_size=8, chunk_size=4, num_devices=devices,
            data_bytes=data_bytes)["total_bytes"]
        assert 0.5 <= estimates[devices] / peaks[devices] <= 2.0, (devices, estimates, peaks)
    assert peaks[2] < 0.6 * peaks[1]  # two clients per device instead of four
