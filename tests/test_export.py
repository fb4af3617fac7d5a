"""Export of a subnet as a standalone dense model, and its evaluation without the supernet.

The reference is the masked supernet of the tiny trained run (trained_run.py): the exported dense subnet
must give the same logits, and the exported directory alone must reproduce the subnet's accuracy.
"""
import json
import os
import shutil

import jax
import numpy as np
import pytest

import trained_run
from superfed_jax.posttrain import evaluate_export as evaluate_lib
from superfed_jax.posttrain import export
from superfed_jax.posttrain import run_dir
from superfed_jax.supernet import archs as archs_lib
from superfed_jax.supernet.ofa_resnet import cost
from superfed_jax.supernet.ofa_resnet import model as model_lib
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet import subnet as subnet_lib

ARCH = '{"d": [1, 0], "e": [0.5, 0.25, 1.0, 0.25]}'  # a middle-sized subnet of the tiny run's space


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(export directory, arch) of ARCH, exported once for the module."""
    loaded = trained_run.loaded()
    out = str(tmp_path_factory.mktemp("export") / "subnet")
    export.export_loaded(loaded, ARCH, out)
    return out, archs_lib.parse_arch(loaded.family, ARCH)


@pytest.mark.parametrize("arch_text", [ARCH, "largest", "smallest"])
def test_exported_subnet_predicts_like_the_masked_supernet(tmp_path, arch_text):
    loaded = trained_run.loaded()
    export.export_loaded(loaded, arch_text, str(tmp_path))
    model = export.load_exported(str(tmp_path))
    images = loaded.run.dataset.x_val
    dense = np.asarray(jax.jit(export.make_logits_fn(model))(model.params, images))
    masked = trained_run.supernet_logits(model.arch, images)
    np.testing.assert_allclose(dense, masked, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(dense.argmax(-1), masked.argmax(-1))


def test_model_json_describes_the_subnet(exported):
    out, arch = exported
    loaded = trained_run.loaded()
    description = json.load(open(os.path.join(out, export.MODEL_JSON)))
    space = loaded.family.space
    assert description["format"] == export.FORMAT
    assert description["family"] == "ofa_resnet"
    assert space_lib.SearchSpace(**description["space"]) == space
    assert description["arch"] == space_lib.arch_to_dict(space, arch)
    shape = subnet_lib.subnet_shape(space, arch)
    assert description["subnet_shape"] == {"depth": list(shape.depth), "mids": list(shape.mids)}
    assert description["input_shape"] == [space.input_size, space.input_size, space.input_channels]
    assert description["num_classes"] == space.num_classes
    assert description["macs"] == cost.macs(space, arch)
    assert description["params"] == cost.params(space, arch)
    np.testing.assert_array_equal(description["normalization"]["mean"], loaded.run.dataset.mean)
    np.testing.assert_array_equal(description["normalization"]["std"], loaded.run.dataset.std)
    assert description["source"]["checkpoint_round"] == loaded.round
    # The saved params are exactly the dense slice: no supernet-sized tensor is shipped.
    model = export.load_exported(out)
    assert sum(x.size for x in jax.tree.leaves(model.params)) == cost.params(space, arch)


def test_exported_model_evaluates_without_the_supernet(exported, tmp_path, monkeypatch):
    out, arch = exported
    loaded = trained_run.loaded()
    expected = trained_run.val_accuracy(arch)
    moved = str(tmp_path / "elsewhere")
    shutil.copytree(out, moved)

    def unavailable(*args, **kwargs):
        raise AssertionError("the supernet or the run was used")

    monkeypatch.setattr(run_dir, "load_trained", unavailable)
    monkeypatch.setattr(model_lib, "Supernet", unavailable)
    report = evaluate_lib.evaluate_export(moved, split="val")
    assert report["examples"] == len(loaded.run.dataset.y_val) and report["data"] == "digits"
    assert report["accuracy"] == pytest.approx(expected, abs=1e-6)


def test_evaluate_command_line_reports_accuracy_on_a_split(exported):
    out, arch = exported
    result = trained_run.run_module("-m", "superfed_jax.posttrain.evaluate_export", f"--model={out}", "--data=digits",
                                    "--split=val", "--json", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["split"] == "val"
    assert report["accuracy"] == pytest.approx(trained_run.val_accuracy(arch), abs=1e-6)


@pytest.mark.parametrize("text, message", [
    ('{"d": [2, 0], "e": 0.25}', "depth 2 out of range"),
    ('{"d": [1, 0], "e": 0.3}', "expand ratio 0.3 is not in the space"),
    ('{"d": [1, 0, 1], "e": 0.25}', "'d' is a list of 2 integers"),
    ("biggest", "give a tracked name \\(smallest, small, medium, largest\\)"),
    ("search:macs=1", "does not exist; run superfed_jax.posttrain.search first"),
])
def test_arch_outside_the_space_is_refused(tmp_path, text, message):
    loaded = trained_run.loaded()
    with pytest.raises(ValueError, match=message):
        export.resolve_arch(loaded.family, loaded.run.tracked, text, str(tmp_path))


def test_arch_from_search_json(tmp_path):
    loaded = trained_run.loaded()
    best = {"arch": json.loads(ARCH)}
    (tmp_path / "search.json").write_text(json.dumps({"results": [{"budget": "macs=5e5", "best": best}]}))
    arch = export.resolve_arch(loaded.family, loaded.run.tracked, "search:macs=5e5", str(tmp_path))
    assert search_genes(arch) == search_genes(archs_lib.parse_arch(loaded.family, ARCH))
    with pytest.raises(ValueError, match="has no budget 'params=1'; it has \\['macs=5e5'\\]"):
        export.resolve_arch(loaded.family, loaded.run.tracked, "search:params=1", str(tmp_path))


def write_search(directory, checkpoint_round, digest):
    """A search.json in `directory` whose best arch for 'macs=5e5' is ARCH, of the given checkpoint."""
    search = {"checkpoint_round": checkpoint_round, "checkpoint_digest": digest,
              "results": [{"budget": "macs=5e5", "best": {"arch": json.loads(ARCH)}}]}
    with open(os.path.join(directory, "search.json"), "w") as f:
        json.dump(search, f)


def test_a_search_json_of_another_supernet_is_refused(tmp_path):
    loaded = trained_run.loaded()
    write_search(tmp_path, loaded.round, loaded.digest)
    supernet = (loaded.round, loaded.digest)
    resolve = lambda supernet: export.resolve_arch(loaded.family, loaded.run.tracked, "search:macs=5e5",
                                                   str(tmp_path), supernet)
    assert search_genes(resolve(supernet)) == search_genes(archs_lib.parse_arch(loaded.family, ARCH))
    with pytest.raises(ValueError, match=f"search.json is stale: it searched the supernet of round "
                       f"{loaded.round}, but the run's newest checkpoint is of round {loaded.round + 8} "):
        resolve((loaded.round + 8, "b" * 64))
    with pytest.raises(ValueError, match=f"whose weights the run no longer holds: the checkpoint of round "
                       f"{loaded.round} has other weights"):
        resolve((loaded.round, "b" * 64))


def stale_run(tmp_path, checkpoint_round, digest) -> str:
    """A copy of the tiny run whose search.json searched the given checkpoint."""
    workdir = str(tmp_path / "run")
    shutil.copytree(trained_run.workdir(), workdir)
    write_search(workdir, checkpoint_round, digest)
    return workdir


def test_export_command_line_refuses_a_stale_search_with_exit_2(tmp_path):
    loaded = trained_run.loaded()
    command = f"python -m superfed_jax.posttrain.search --workdir={{}} --budget=macs=5e5"
    for name, searched, digest, reason in (
            ("earlier", loaded.round - 4, None,  # an earlier checkpoint, by a search.json without digest
             f"it searched the supernet of round {loaded.round - 4}, but the run's newest checkpoint is "
             f"of round {loaded.round} (the run trained on, or was started over, after the search)"),
            ("overwritten", loaded.round, "b" * 64,  # the same round of a run started over
             f"it searched a supernet of round {loaded.round} whose weights the run no longer holds: the "
             f"checkpoint of round {loaded.round} has other weights (digest {loaded.digest[:12]}, the "
             "search's bbbbbbbbbbbb), so the run was started over (--config.overwrite=True) or replaced "
             "after the search")):
        workdir = stale_run(tmp_path / name, searched, digest)
        result = trained_run.run_module("-m", "superfed_jax.posttrain.export", f"--workdir={workdir}",
                                        "--arch=search:macs=5e5", f"--out={tmp_path / name / 'x'}",
                                        timeout=120)
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1] == (
            f"error: {workdir}/search.json is stale: {reason}. Its subnets and accuracies are not those of "
            f"the run's supernet, so they are not used. Search again: {command.format(workdir)}")
        assert not (tmp_path / name / "x").exists()


def test_export_of_a_current_search_json(tmp_path):
    loaded = trained_run.loaded()
    workdir = stale_run(tmp_path, loaded.round, loaded.digest)
    description = export.export_run(workdir, "search:macs=5e5", str(tmp_path / "out"))
    assert description["arch"] == loaded.family.arch_to_json(archs_lib.parse_arch(loaded.family, ARCH))


def search_genes(arch):
    return np.asarray(arch.depth).tolist(), np.asarray(arch.expand).tolist()


def test_export_refuses_to_overwrite_unless_asked(exported):
    out, _ = exported
    with pytest.raises(ValueError, match="already holds an export .* pass --overwrite"):
        export.export_loaded(trained_run.loaded(), "largest", out)
    export.export_loaded(trained_run.loaded(), ARCH, out, overwrite=True)
    assert export.load_exported(out).description["arch"] == json.loads(ARCH)


def test_evaluate_refuses_bad_inputs(exported, tmp_path):
    out, _ = exported
    with pytest.raises(FileNotFoundError, match="is not an exported model: it has no model.json"):
        evaluate_lib.evaluate_export(str(tmp_path))
    with pytest.raises(ValueError, match="--split='dev': allowed train, val, test"):
        evaluate_lib.evaluate_export(out, split="dev")
    with pytest.raises(ValueError, match="--data='imagenet': expected a dataset name"):
        evaluate_lib.evaluate_export(out, data="imagenet")
    rng = np.random.default_rng(0)
    path = str(tmp_path / "rgb.npz")
    np.savez(path, x_train=rng.integers(0, 256, (20, 6, 6, 3), dtype=np.uint8), y_train=np.arange(20) % 3,
             x_test=rng.integers(0, 256, (10, 6, 6, 3), dtype=np.uint8), y_test=np.arange(10) % 3)
    with pytest.raises(ValueError, match=r"the model takes \(8, 8, 1\) images \(H, W, C\), the data has "
                                         r"\(6, 6, 3\)"):
        evaluate_lib.evaluate_export(out, data=path)


def test_export_checks_the_arch_before_loading_the_run(tmp_path, monkeypatch):
    def unavailable(*args, **kwargs):
        raise AssertionError("the run was loaded before the arch was checked")

    monkeypatch.setattr(export.run_dir, "load_trained_run", unavailable)
    with pytest.raises(ValueError, match="arch expand ratio 0.3 is not in the space"):
        export.export_run(trained_run.workdir(), '{"d": [1, 0], "e": 0.3}', str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_export_command_line_without_checkpoint_exits_2(tmp_path):
    no_checkpoint = tmp_path / "run"
    no_checkpoint.mkdir()
    shutil.copy(os.path.join(trained_run.workdir(), "config.json"), no_checkpoint / "config.json")
    result = trained_run.run_module("-m", "superfed_jax.posttrain.export", f"--workdir={no_checkpoint}",
                                    "--arch=largest", f"--out={tmp_path / 'y'}", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {no_checkpoint} has no checkpoint ({no_checkpoint}/checkpoints is empty or missing); "
        "train the run first")


# ------------------------------------------------------------------------------ integrity of exports


def _copy_export(exported, tmp_path) -> str:
    out, _ = exported
    copy = str(tmp_path / "copy")
    shutil.copytree(out, copy)
    return copy


def _edit_model_json(model_dir: str, edit) -> str:
    path = os.path.join(model_dir, export.MODEL_JSON)
    description = json.load(open(path))
    edit(description)
    with open(path, "w") as f:
        json.dump(description, f)
    return path


def _files_snapshot(model_dir: str) -> dict:
    return {os.path.join(root, name): open(os.path.join(root, name), "rb").read()
            for root, _, names in os.walk(model_dir) for name in names}


def test_export_stores_the_params_checksum_and_verifies_it(exported):
    out, _ = exported
    description = json.load(open(os.path.join(out, export.MODEL_JSON)))
    model = export.load_exported(out)
    # The reference digest: SHA-256 over each leaf's dtype, shape and bytes in tree order, computed here.
    import hashlib
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(model.params):
        leaf = np.asarray(leaf)
        digest.update(f"{leaf.dtype}{leaf.shape}".encode())
        digest.update(leaf.tobytes())
    assert description[export.DIGEST_KEY] == digest.hexdigest()


def test_a_flipped_params_byte_is_refused_naming_the_export(exported, tmp_path):
    copy = _copy_export(exported, tmp_path)
    files = [os.path.join(root, name) for root, _, names in os.walk(os.path.join(copy, export.PARAMS_DIR))
             for name in names]
    largest = max(files, key=os.path.getsize)
    data = bytearray(open(largest, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(largest, "wb").write(bytes(data))
    before = _files_snapshot(copy)
    with pytest.raises(ValueError) as info:
        export.load_exported(copy)
    assert os.path.join(copy, export.PARAMS_DIR) in str(info.value)
    assert "re-export the model" in str(info.value)
    assert _files_snapshot(copy) == before  # loading changed nothing
    result = trained_run.run_module("-m", "superfed_jax.posttrain.evaluate_export", f"--model={copy}",
                                    "--data=digits", timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {os.path.join(copy, export.PARAMS_DIR)}")


def test_an_export_without_a_checksum_loads_with_a_warning(exported, tmp_path, capsys):
    copy = _copy_export(exported, tmp_path)
    _edit_model_json(copy, lambda d: d.pop(export.DIGEST_KEY))
    export.load_exported(copy)
    assert f"has no {export.DIGEST_KEY}" in capsys.readouterr().err


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["normalization"].update(std=[0.0]), r"normalization.std=\[0.0\]: every value must be > 0"),
    (lambda d: d["normalization"].update(mean=[float("nan")]),
     r"normalization.mean=\[nan\]: every value must be finite"),
    (lambda d: d["normalization"].update(std=[1e39]),
     r"normalization.std=\[1e\+39\]: every value must be finite"),
    (lambda d: d["normalization"].update(mean=[0.1, 0.2]), r"need a list of 1 numbers"),
    (lambda d: d.update(dtype="int8"), r"dtype='int8'; allowed values are"),
    (lambda d: d.update(conv_impl="cudnn"), r"conv_impl='cudnn'; allowed values are"),
    (lambda d: d["space"].update(divisor=0), r"space is not a valid search space"),
    (lambda d: d["space"].update(colour="blue"), r"space is not a valid search space"),
    (lambda d: d["arch"].update(d=[5, 0]), r"depth 5 out of range"),
    (lambda d: d.update(input_shape=[8, 16, 1]), r"input_shape=\[8, 16, 1\] does not match"),
    (lambda d: d.update(num_classes=11), r"num_classes=11 does not match"),
    (lambda d: d.update(params_sha256="abc"), r"params_sha256='abc' is not a SHA-256"),
    (lambda d: d.pop("arch"), r"arch is missing"),
])
def test_edited_model_json_is_refused_naming_the_file(exported, tmp_path, edit, message):
    copy = _copy_export(exported, tmp_path)
    path = _edit_model_json(copy, edit)
    with pytest.raises(ValueError, match=message) as info:
        export.read_description(copy)  # what load_exported and evaluate_export read first
    assert str(info.value).startswith(f"{path}: ")


def test_model_json_that_is_not_json_is_named(exported, tmp_path):
    copy = _copy_export(exported, tmp_path)
    path = os.path.join(copy, export.MODEL_JSON)
    open(path, "w").write('{"format": ')
    with pytest.raises(ValueError, match="not valid JSON") as info:
        evaluate_lib.evaluate_export(copy)
    assert str(info.value).startswith(f"{path}: ")
    open(path, "w").write("[1, 2]")
    with pytest.raises(ValueError, match="holds a list, not a JSON object"):
        export.read_description(copy)


def test_export_names_a_damaged_config_json(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run.workdir(), run)
    (run / "config.json").write_text('{"seed": ')
    with pytest.raises(ValueError, match="not valid JSON") as info:
        export.export_run(str(run), "largest", str(tmp_path / "out"))
    assert str(info.value).startswith(f"{run / 'config.json'}: ")
    assert not (tmp_path / "out").exists()


def test_out_naming_a_file_is_refused_before_anything_is_loaded(tmp_path):
    # Before: superfed-export --out=<a file> said only "[Errno 17] File exists".
    out_file = tmp_path / "a_file"
    out_file.write_text("mine")
    for out in (out_file, out_file / "export"):
        with pytest.raises(ValueError, match=r"--out must be a directory \(the export writes model.json"):
            export.check_out_dir(str(out), overwrite=True)
    result = trained_run.run_module("-c", "from superfed_jax.posttrain.export import console; console()",
                                    "--workdir=tests/fixtures/run_v0_1_0", "--arch=largest", f"--out={out_file}")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: --out={out_file} is a file; "), result.stderr
    assert result.stderr.count("\n") == 1 and out_file.read_text() == "mine"


# The fixture's arch is {"d": [1, 0], "e": [0.5, 0.25, 1.0, 0.25]}: another expand ratio, same blocks.
@pytest.mark.parametrize("field, value", [("stem_width", 16),
                                          ("arch", {"d": [1, 0], "e": [0.25, 0.25, 1.0, 0.25]})])
def test_an_edited_model_json_is_one_message_not_a_flax_traceback(tmp_path, field, value):
    # Before: an edited space.stem_width restored (orbax takes the stored shapes), passed the params'
    # checksum (which does not cover model.json) and failed in the forward pass: flax ScopeParamShapeError.
    export_dir = tmp_path / "export"
    shutil.copytree(os.path.join(os.path.dirname(__file__), "fixtures", "export_before_families"), export_dir)
    description = json.loads((export_dir / "model.json").read_text())
    if field == "arch":
        description["arch"] = value
    else:
        description["space"][field] = value
    (export_dir / "model.json").write_text(json.dumps(description))
    with pytest.raises(ValueError, match="model.json does not describe the params in") as refused:
        export.load_exported(str(export_dir))
    assert "model.json implies" in str(refused.value) and "re-export the model" in str(refused.value)
    if field == "stem_width":
        assert "['stem']['kernel']: model.json implies (3, 3, 1, 16), params/ hold (3, 3, 1, 8)" in str(
            refused.value)
        result = trained_run.run_module(
            "-c", "from superfed_jax.posttrain.evaluate_export import console; console()", f"--model={export_dir}")
        assert result.returncode == 2 and result.stderr.startswith(f"error: {export_dir / 'model.json'} does "
                                                                   "not describe the params"), result.stderr
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
