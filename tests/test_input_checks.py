"""Every input is checked, with one clear error naming the file: damaged or odd `.npz` files, data that
overflows after a conversion, label semantics, and the small CLIs (issues 14.6 and 15)."""
import io
import pickle
import zipfile

import ml_collections
import numpy as np
import pytest

from superfed_jax.data import load_dataset, npz


def _config(**overrides):
    fields = dict(name="npz", path="", archive="", tfds_data_dir="", val_fraction=0.0)
    fields.update(overrides)
    return ml_collections.ConfigDict(fields)


def _arrays(side=(4, 4), n=6, dtype=np.uint8):
    rng = np.random.default_rng(0)
    return dict(x_train=rng.integers(0, 256, (n,) + side + (1,)).astype(dtype),
                y_train=np.arange(n) % 3, x_test=rng.integers(0, 256, (3,) + side + (1,)).astype(dtype),
                y_test=np.array([0, 1, 2]))


def _write(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _load_error(path) -> str:
    with pytest.raises(ValueError) as info:
        npz.load_npz_arrays(str(path))
    assert str(path) in str(info.value)
    return str(info.value)


# ------------------------------------------------------------------------------ damaged files


def test_truncated_npz_is_a_clean_error(tmp_path):
    good = open(_write(tmp_path / "good.npz", **_arrays()), "rb").read()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good[:len(good) // 2])
    assert "damaged or truncated" in _load_error(cut)


def test_bad_crc_npz_is_a_clean_error(tmp_path):
    good = open(_write(tmp_path / "good.npz", **_arrays()), "rb").read()
    # Flip one byte inside the first member's data (after its 30-byte local header and name).
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        first = archive.infolist()[0]
    offset = first.header_offset + 30 + len(first.filename) + 100
    bad = bytearray(good)
    bad[offset] ^= 0xFF
    path = tmp_path / "crc.npz"
    path.write_bytes(bytes(bad))
    message = _load_error(path)
    assert "damaged or truncated" in message and "CRC" in message


@pytest.mark.parametrize("content,kind", [
    (b"hello, these are not arrays" * 4, "not a zip archive"),
    (b"", "an empty file"),
    (pickle.dumps({"x_train": 1}), "Python pickle"),
])
def test_non_npz_files_are_named_for_what_they_are(tmp_path, content, kind):
    path = tmp_path / "odd.npz"
    path.write_bytes(content)
    message = _load_error(path)
    assert kind in message and "pickled data" not in message


def test_single_npy_array_is_named(tmp_path):
    path = tmp_path / "one.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    assert "a single .npy array" in _load_error(path)


def test_header_declaring_a_huge_shape_is_refused_before_allocating(tmp_path):
    arrays = _arrays()
    buffer = io.BytesIO()
    np.save(buffer, arrays["x_train"])
    header = buffer.getvalue()
    # Rewrite the declared shape so that it claims far more data than the member holds.
    damaged = header.replace(b"'shape': (6, 4, 4, 1)", b"'shape': (9999999999999,)", 1)
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in arrays.items():
            member = io.BytesIO()
            np.save(member, value)
            archive.writestr(f"{key}.npy", damaged if key == "x_train" else member.getvalue())
    assert "declares shape (9999999999999,)" in _load_error(path)


# ------------------------------------------------------------------------- after conversions


def test_float64_pixels_beyond_float32_are_refused(tmp_path):
    arrays = _arrays(dtype=np.float64)
    arrays["x_train"][1, 0, 0, 0] = 1e300  # finite in float64, inf in float32
    arrays["x_test"] = arrays["x_test"].astype(np.float64)
    message = _load_error(_write(tmp_path / "big.npz", **arrays))
    assert "beyond float32's range" in message and "1e+300" in message


def test_test_pixels_that_overflow_once_normalized_are_refused(tmp_path):
    arrays = _arrays(dtype=np.float32)
    arrays["x_train"] = arrays["x_train"] / 255.0  # std ~0.3
    arrays["x_test"][0, 0, 0, 0] = 3e38  # finite float32, / std overflows
    path = _write(tmp_path / "far.npz", **arrays)
    with pytest.raises(ValueError, match="x_test normalised with the training statistics") as info:
        load_dataset(_config(path=path), seed=0)
    assert path in str(info.value)


# ------------------------------------------------------------------------------ data semantics


def test_test_labels_outside_training_range_are_named(tmp_path):
    arrays = _arrays()
    arrays["y_test"] = np.array([0, 1000, 7])
    message = _load_error(_write(tmp_path / "stray.npz", **arrays))
    assert "2 label(s) outside the training labels' range [0, 2]: 7, 1000" in message


def test_non_square_images_are_refused_up_front(tmp_path):
    path = _write(tmp_path / "wide.npz", **_arrays(side=(8, 16)))
    with pytest.raises(ValueError, match=r"images are 8x16.*only square images") as info:
        load_dataset(_config(path=path), seed=0)
    assert path in str(info.value)


def test_single_class_dataset_warns(tmp_path, capsys):
    arrays = _arrays()
    arrays["y_train"][:] = 0
    arrays["y_test"][:] = 0
    path = _write(tmp_path / "one.npz", **arrays)
    dataset = load_dataset(_config(path=path), seed=0)
    assert dataset.num_classes == 1
    assert "every training label is 0" in capsys.readouterr().err
    # Two classes: no warning.
    load_dataset(_config(path=_write(tmp_path / "two.npz", **_arrays())), seed=0)
    assert "warning" not in capsys.readouterr().err


# ------------------------------------------------------------------------------ partition skew


def test_tiny_dirichlet_alpha_warns_with_the_measured_skew(capsys):
    from superfed_jax.data import partition
    labels = np.arange(5000) % 10
    parts = partition.make_partition(labels, 100, "dirichlet", seed=0, alpha=1e-6, min_size=10)
    err = capsys.readouterr().err
    # The numbers in the warning are those of the split, counted here independently.
    top = [np.bincount(labels[p], minlength=10).max() / len(p) for p in parts]
    single = sum(t >= 0.95 for t in top)
    assert f"{single} of 100 clients hold a single class" in err
    assert f"{np.mean(top):.0%} of its examples on average (10% in the whole training set)" in err
    partition.make_partition(labels, 100, "dirichlet", seed=0, alpha=100.0, min_size=10)
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------- config values against the data


def _launch(*args, cwd=None):
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=root)
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, "-m", "superfed_jax.run.launch", *args], cwd=cwd or root,
                          env=env, capture_output=True, text=True, timeout=300)


def test_crop_and_cutout_larger_than_the_images_stop_before_anything_is_written(tmp_path):
    workdir = tmp_path / "run"
    result = _launch("--config=configs/digits.py:smoke", f"--workdir={workdir}",
                     "--config.data.crop_padding=8", "--config.data.cutout_size=9")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "data.crop_padding=8: not smaller than the side of the 8x8 images" in result.stderr
    assert "data.cutout_size=9: larger than the 8x8 images" in result.stderr
    assert "Traceback" not in result.stderr
    # Only the run's lock (held from start-up, run/workdir.py) may exist: no result, no checkpoint.
    assert not workdir.exists() or [p.name for p in workdir.iterdir()] in ([], [".lock"])


def test_augmentation_limits_follow_the_image_side():
    from superfed_jax import config as config_lib
    from superfed_jax import validation
    config = config_lib.base_config()
    config.data.update(crop_padding=7, cutout_size=8)
    validation.check_against_data(config, 1000, (8, 8, 1))  # the largest values that fit
    validation.check_against_data(config, 1000)  # no image shape: nothing to check against
    config.data.update(crop_padding=8, cutout_size=9)
    with pytest.raises(ValueError) as info:
        validation.check_against_data(config, 1000, (8, 8, 1))
    assert [line.split(":")[0] for line in str(info.value).splitlines()] == [
        "data.crop_padding=8", "data.cutout_size=9"]


def test_cost_baseline_outside_the_space_is_refused_before_training():
    from superfed_jax import config as config_lib
    from superfed_jax import validation
    config = config_lib.base_config()
    config.cost.baseline = '[{"d": [99, 99, 99, 99], "e": 0.1}]'
    with pytest.raises(ValueError, match=r"^cost.baseline=.*'d'") as info:
        validation.check_config(config)
    assert len(str(info.value).splitlines()) == 1


def test_eval_batch_is_capped_at_the_split_and_gives_the_same_metrics():
    import jax.numpy as jnp
    from superfed_jax.federated import evaluation
    from superfed_jax.run import build
    assert build.eval_batch_size(999999999, 37) == 37
    assert build.eval_batch_size(10, 37) == 10
    rng = np.random.default_rng(0)
    images, labels = rng.normal(size=(37, 2, 2, 1)).astype(np.float32), rng.integers(0, 3, 37)
    weights = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)

    def logits_fn(params, batch, arch):
        return batch.reshape(len(batch), -1) @ params * arch

    evaluate = evaluation.make_evaluate_fn(logits_fn)
    archs = jnp.ones((1,), jnp.float32)
    capped = evaluate(weights, archs, evaluation.make_eval_set(images, labels, build.eval_batch_size(500, 37)))
    padded = evaluate(weights, archs, evaluation.make_eval_set(images, labels, 500))
    assert evaluation.make_eval_set(images, labels, build.eval_batch_size(500, 37)).labels.shape == (1, 37)
    np.testing.assert_allclose(np.asarray(capped), np.asarray(padded), rtol=1e-6)
    # The reference: accuracy and mean cross-entropy computed directly.
    logits = images.reshape(37, -1) @ np.asarray(weights)
    accuracy = np.mean(np.argmax(logits, -1) == labels)
    np.testing.assert_allclose(np.asarray(capped[0]), [accuracy], rtol=1e-6)


# --------------------------------------------------------------------------------- small CLIs


def _module(*args, timeout=120, cwd=None):
    """`python ARGS` in the repository root (or `cwd`), with the checkout on the path."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=root)
    return subprocess.run([sys.executable, *args], cwd=cwd or root, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args, message", [
    # Config and flag problems come together, in one message (one process: each costs a JAX import).
    (["--config=configs/digits.py", "--config.space.divisor=0", "--config.client.batch_size=0", "--devices=0"],
     ["error: client.batch_size=0: must be an integer >= 1", "space.divisor=0: must be a positive integer",
      "--devices=0: must be an integer >= 1"]),
    (["--config=configs/digits.py", "--devices=abc"], ["error: flag --devices=abc: invalid literal"]),
    (["--config=no_such.py", "--config.fl.rounds=3"],
     ["error: --config=no_such.py: 'no_such.py' does not exist"]),
])
def test_memory_command_validates_the_config_and_flags(args, message):
    result = _module("-m", "superfed_jax.run.memory", *args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    for expected in message:
        assert any(line.startswith(expected) for line in lines), lines


def test_memory_and_cost_commands_find_the_packaged_configs_from_anywhere(tmp_path):
    """Outside the repository: the default config (once `_ErrorConfig`) and a config by name."""
    import json
    result = _module("-m", "superfed_jax.run.memory", "--available_gib=1", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["available_bytes"] == 2 ** 30
    result = _module("-m", "superfed_jax.reports.arch_size", "--config=configs/digits.py",
                     '--arch={"d":[0,0,0],"e":0.25}', "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.startswith("config: ") and result.stderr.rstrip().endswith("digits.py")
    assert json.loads(result.stdout)["params"] > 0


def test_memory_command_still_estimates_a_good_config():
    import json
    result = _module("-m", "superfed_jax.run.memory", "--config=configs/digits.py", "--available_gib=1",
                     "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["available_bytes"] == 2 ** 30


@pytest.mark.parametrize("args, message", [
    # With an override too: the missing file is still what is reported (not ml_collections' traceback).
    (["--config=no_such.py", "--config.fl.rounds=3"],
     "error: --config=no_such.py: 'no_such.py' does not exist"),
    (["--config=configs/digits.py", "--config.space.divisor=0"],
     "error: space.divisor=0: must be a positive integer"),
])
def test_cost_command_with_a_bad_config_is_one_message(args, message):
    result = _module("-m", "superfed_jax.reports.arch_size", *args, '--arch={"d":[0,0],"e":0.25}')
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1  # one message, no traceback
    assert result.stderr.startswith(message)


@pytest.mark.parametrize("process_id", [0, 1])  # 0 hosts the coordinator; 1 finds no coordinator
def test_distributed_initialize_says_what_it_waits_for_and_gives_up_after_the_timeout(process_id):
    import socket
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    code = ("import ml_collections\n"
            "from superfed_jax.run import distributed\n"
            "distributed.initialize(ml_collections.ConfigDict(dict(initialize=True, "
            f"coordinator_address='localhost:{port}', num_processes=2, process_id={process_id}, "
            "timeout_s=2)))\n"
            "print('connected')\n")
    result = _module("-c", code, timeout=120)
    # Our deadline, not JAX's abort (SIGABRT, exit 134, a C++ log): exit 2 and exactly two lines.
    assert result.returncode == 2 and "connected" not in result.stdout, result.stderr
    assert result.stderr.splitlines() == [
        f"distributed: process {process_id} connecting to the coordinator at localhost:{port}; waiting up to "
        "2 s for all 2 processes (distributed.timeout_s)",
        "error: distributed: not every one of the 2 processes connected within 2 s, so this process stopped; "
        "nothing was written. Start the same command on every host (each with its own "
        "distributed.process_id), check distributed.coordinator_address, or raise distributed.timeout_s."]


# ---------------------------------------------------------------------------- the cost section


@pytest.mark.parametrize("override, message", [
    ("--config.cost.bytes_per_param=0", "error: cost.bytes_per_param=0: must be an integer >= 1"),
    ("--config.cost.bytes_per_param=-4", "error: cost.bytes_per_param=-4: must be an integer >= 1"),
    ('--config.cost.baseline=[{"d":[9,9],"e":0.25}]', "error: cost.baseline="),
])
@pytest.mark.parametrize("dry_run", [True, False])
def test_cost_section_is_refused_before_anything_runs(tmp_path, override, message, dry_run):
    workdir = tmp_path / "run"
    result = _launch("--config=configs/digits.py:smoke", f"--workdir={workdir}", override,
                     f"--config.dry_run={dry_run}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith(message) and "Traceback" not in result.stderr
    assert not workdir.exists()  # refused before the workdir (or cost.json) is written
