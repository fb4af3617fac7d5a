"""One subnet of a trained run as a standalone dense model, and loading it back without the supernet.

Khare et al., arXiv 2301.10879 (docs/algorithm.md section 9): "the chosen subnet is then sliced out as a dense
standalone model". The slice is `subnet.extract` (first-k channels, kept blocks only); the model is
`subnet.DenseSubnet`. An export directory holds

  model.json  what is needed to rebuild and feed the model: the space fields, the arch (paper JSON form),
              the dataset's normalization mean/std, convolution implementation and dtype, MACs and params,
              and where it came from (run directory, checkpoint round, the run's data config and seed);
              and `params_sha256`, the checksum of the dense params (as training checkpoints keep one);
  params/     an orbax checkpoint of the dense params (host NumPy arrays, so it restores on any device).

Loading checks everything before it is used: model.json is validated field by field (space and arch
valid, input shape and classes matching the space, mean finite, std finite and > 0, a known conv_impl
and dtype), and the restored params must match their checksum; every error names the file.

  python -m superfed_jax.posttrain.export --workdir=RUN_DIR --arch=largest --out=DIR
  python -m superfed_jax.posttrain.export --workdir=RUN_DIR --arch='{"d":[1,0,1],"e":0.22}' --out=DIR
  python -m superfed_jax.posttrain.export --workdir=RUN_DIR --arch=search:macs=0.8e9 --out=DIR  # from search.json
"""
import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import flags
from absl import logging

from superfed_jax import _console
from superfed_jax import _cli
from superfed_jax import _json_file
from superfed_jax import config as config_lib
from superfed_jax.data import augment
from superfed_jax.posttrain import run_dir
from superfed_jax.posttrain import search
from superfed_jax.run import checkpoint
from superfed_jax.supernet import conv
from superfed_jax.supernet.ofa_resnet import cost
from superfed_jax.supernet.ofa_resnet import model as model_lib
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet import subnet

FORMAT = "superfed_jax.dense_subnet/1"
MODEL_JSON = "model.json"
PARAMS_DIR = "params"
DIGEST_KEY = "params_sha256"


# ----------------------------------------------------------------------------------------------------
# Which arch.


def search_result_arch(space: space_lib.SearchSpace, workdir: str, budget: str) -> space_lib.Arch:
    """The best arch that RUN_DIR/search.json holds for the budget written as `budget`."""
    path = os.path.join(workdir, search.SEARCH_FILE)
    if not os.path.exists(path):
        raise ValueError(f"arch 'search:{budget}': {path} does not exist; run superfed_jax.posttrain.search first")
    found = _json_file.read_object(path, "run superfed_jax.posttrain.search again to rewrite it").get("results")
    if not isinstance(found, list) or not all(isinstance(r, dict) and "budget" in r for r in found):
        raise ValueError(f"{path}: 'results' is not a list of search results with a 'budget' each; run "
                         "superfed_jax.posttrain.search again to rewrite it")
    results = {r["budget"]: r for r in found}
    if budget not in results:
        raise ValueError(f"arch 'search:{budget}': {path} has no budget {budget!r}; it has "
                         f"{list(results)}")
    return space_lib.arch_from_dict(space, results[budget]["best"]["arch"])


def resolve_arch(space: space_lib.SearchSpace, tracked: dict, text: str, workdir: str) -> space_lib.Arch:
    """An arch from a tracked name ('largest', ...), 'search:BUDGET' or the paper's JSON form.

    Raises:
      ValueError: naming the allowed forms, or saying why the arch is outside the space.
    """
    text = text.strip()
    if text in tracked:
        return tracked[text]
    if text.startswith("search:"):
        return search_result_arch(space, workdir, text[len("search:"):])
    if not text.startswith("{"):
        raise ValueError(f"arch {text!r}: give a tracked name ({', '.join(tracked)}), "
                         "'search:BUDGET' (the best arch of RUN_DIR/search.json) or an arch JSON such as "
                         '\'{"d":[0,1,0],"e":0.14}\'')
    return space_lib.parse_arch(space, text)


# ----------------------------------------------------------------------------------------------------
# Writing.


def describe(space: space_lib.SearchSpace, arch: space_lib.Arch, mean, std, conv_impl: str,
             dtype: str, source: dict) -> dict:
    """The model.json content of one exported subnet."""
    shape = subnet.subnet_shape(space, arch)
    return {
        "format": FORMAT,
        "space": dataclasses.asdict(space),
        "arch": space_lib.arch_to_dict(space, arch),
        "subnet_shape": {"depth": list(shape.depth), "mids": list(shape.mids)},
        "input_shape": [space.input_size, space.input_size, space.input_channels],
        "num_classes": space.num_classes,
        "normalization": {"mean": np.asarray(mean, np.float32).tolist(),
                          "std": np.asarray(std, np.float32).tolist()},
        "conv_impl": conv_impl,
        "dtype": dtype,
        "macs": cost.macs(space, arch),
        "params": cost.params(space, arch),
        "source": source,
    }


def check_out_dir(out_dir: str, overwrite: bool) -> None:
    """Raises ValueError when `out_dir` holds an earlier export and `overwrite` is off."""
    existing = [n for n in (MODEL_JSON, PARAMS_DIR) if os.path.exists(os.path.join(out_dir, n))]
    if existing and not overwrite:
        raise ValueError(f"{out_dir} already holds an export ({', '.join(existing)}); pass --overwrite "
                         "or choose another --out")


def prepare_out_dir(out_dir: str, overwrite: bool) -> None:
    """Creates `out_dir`; removes an earlier export there when `overwrite` (else refuses)."""
    check_out_dir(out_dir, overwrite)
    # model.json first: until the new one is written, the directory is not taken for a complete export.
    if os.path.exists(os.path.join(out_dir, MODEL_JSON)):
        os.remove(os.path.join(out_dir, MODEL_JSON))
    shutil.rmtree(os.path.join(out_dir, PARAMS_DIR), ignore_errors=True)
    os.makedirs(out_dir, exist_ok=True)


def export_subnet(out_dir: str, space: space_lib.SearchSpace, params, arch: space_lib.Arch,
                  description: dict, overwrite: bool = False) -> dict:
    """Writes the dense params of `arch` (sliced from supernet `params`) and model.json to `out_dir`.

    Args:
      out_dir: the export directory (created).
      space: the search space.
      params: supernet params.
      arch: one concrete arch of the space.
      description: the model.json content (`describe`).
      overwrite: replace an earlier export in `out_dir`.

    Returns:
      `description` with the params' checksum added (`DIGEST_KEY`), as written to model.json.
    """
    prepare_out_dir(out_dir, overwrite)
    dense = jax.device_get(subnet.extract(space, params, arch))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.abspath(os.path.join(out_dir, PARAMS_DIR)), dense)
    checkpointer.wait_until_finished()
    description = dict(description, **{DIGEST_KEY: checkpoint.state_digest(dense)})
    # model.json last: a directory with model.json is a complete export.
    with open(os.path.join(out_dir, MODEL_JSON), "w") as f:
        json.dump(description, f, indent=2)
    return description


def export_loaded(loaded: run_dir.TrainedRun, arch_text: str, out_dir: str,
                  overwrite: bool = False) -> dict:
    """Exports one subnet of a loaded trained run; returns its model.json content.

    Raises:
      ValueError: the arch is unknown or outside the run's space, or `out_dir` holds an export.
    """
    run, config = loaded.run, loaded.config
    arch = resolve_arch(run.space, run.tracked, arch_text, loaded.workdir)
    source = {"workdir": loaded.workdir, "checkpoint_round": loaded.round, "seed": config["seed"],
              "data": config["data"]}
    description = describe(run.space, arch, run.dataset.mean, run.dataset.std, config["model"]["conv_impl"],
                           config["model"]["dtype"], source)
    return export_subnet(out_dir, run.space, loaded.params, arch, description, overwrite)


def export_run(workdir: str, arch_text: str, out_dir: str, overwrite: bool = False) -> dict:
    """Loads the trained run in `workdir` and exports one subnet (see `export_loaded`).

    The arch and the output directory are checked before the run is loaded: which archs exist depends
    only on the config's space fields, not on the data.

    Raises:
      FileNotFoundError: `workdir` has no config.json or no checkpoint.
      ValueError: the arch is unknown or outside the run's space, or `out_dir` holds an export.
    """
    run_dir.check_run_dir(workdir)
    config = run_dir.saved_config(workdir)  # a damaged one: ValueError naming the file and a copy
    space = config_lib.search_space(config)
    resolve_arch(space, space_lib.tracked_archs(space, config.eval.tracked), arch_text, workdir)
    check_out_dir(out_dir, overwrite)
    return export_loaded(run_dir.load_trained_run(workdir), arch_text, out_dir, overwrite)


# ----------------------------------------------------------------------------------------------------
# Loading, with no supernet involved.


class ExportedModel(NamedTuple):
    """An exported subnet: rebuild it with `net()` and feed it raw images through `make_logits_fn`."""

    space: space_lib.SearchSpace
    arch: space_lib.Arch
    params: Any  # DenseSubnet params
    mean: np.ndarray  # float32 [C]
    std: np.ndarray  # float32 [C]
    description: dict  # model.json

    def net(self) -> subnet.DenseSubnet:
        """The Flax module with the exported shapes."""
        return subnet.DenseSubnet(self.space, subnet.subnet_shape(self.space, self.arch),
                                  self.description["conv_impl"], jnp.dtype(self.description["dtype"]))


def _require(path: str, mapping: Mapping, key: str, kind, what: str):
    """`mapping[key]`, which must be a `kind`; ValueError naming the file and the key otherwise."""
    if key not in mapping:
        raise ValueError(f"{path}: {what} is missing; re-export the model")
    value = mapping[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ValueError(f"{path}: {what}={value!r} is not a {getattr(kind, '__name__', kind)}")
    return value


def _channel_values(path: str, values, what: str, channels: int) -> np.ndarray:
    """A list of `channels` finite numbers as float32; ValueError naming the file otherwise."""
    if (not isinstance(values, list) or len(values) != channels
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
        raise ValueError(f"{path}: {what}={values!r}: need a list of {channels} numbers (one per "
                         "input channel)")
    array = np.asarray(values, np.float64)
    with np.errstate(over="ignore"):  # beyond float32 is reported just below
        as_float32 = array.astype(np.float32)
    if not np.all(np.isfinite(array)) or not np.all(np.isfinite(as_float32)):
        raise ValueError(f"{path}: {what}={values!r}: every value must be finite")
    return as_float32


def _check_space_and_arch(path: str, description: dict) -> tuple:
    """The space and arch of model.json, each checked; ValueError naming the file otherwise."""
    fields = _require(path, description, "space", dict, "space")
    try:
        space = space_lib.SearchSpace(**fields)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: space is not a valid search space: {error}") from error
    try:
        arch = space_lib.arch_from_dict(space, _require(path, description, "arch", dict, "arch"))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    return space, arch


def check_description(path: str, description) -> dict:
    """Validates the content of a model.json read from `path`; returns it.

    Checks the format, the space and arch, that input_shape and num_classes match the space, that the
    normalization mean is finite and the std finite and > 0 (one value per channel), that conv_impl and
    dtype are known, and that the params checksum (if present) is a SHA-256 hex digest.

    Raises:
      ValueError: naming `path`, the field and what is allowed.
    """
    if not isinstance(description, dict):
        raise ValueError(f"{path}: holds a {type(description).__name__}, not a JSON object")
    if description.get("format") != FORMAT:
        raise ValueError(f"{path}: format {description.get('format')!r}, expected {FORMAT!r}")
    space, _ = _check_space_and_arch(path, description)
    expected = [space.input_size, space.input_size, space.input_channels]
    if description.get("input_shape") != expected:
        raise ValueError(f"{path}: input_shape={description.get('input_shape')!r} does not match the "
                         f"space's {expected}")
    if description.get("num_classes") != space.num_classes:
        raise ValueError(f"{path}: num_classes={description.get('num_classes')!r} does not match the "
                         f"space's {space.num_classes}")
    normalization = _require(path, description, "normalization", dict, "normalization")
    _channel_values(path, normalization.get("mean"), "normalization.mean", space.input_channels)
    std = _channel_values(path, normalization.get("std"), "normalization.std", space.input_channels)
    if not np.all(std > 0):
        raise ValueError(f"{path}: normalization.std={normalization['std']!r}: every value must be > 0")
    conv_impl = _require(path, description, "conv_impl", str, "conv_impl")
    if conv_impl not in conv.CONV_IMPLS:
        raise ValueError(f"{path}: conv_impl={conv_impl!r}; allowed values are {list(conv.CONV_IMPLS)}")
    dtype = _require(path, description, "dtype", str, "dtype")
    if dtype not in model_lib.DTYPES:
        raise ValueError(f"{path}: dtype={dtype!r}; allowed values are {list(model_lib.DTYPES)}")
    digest = description.get(DIGEST_KEY)
    if digest is not None and (not isinstance(digest, str) or len(digest) != 64
                               or any(c not in "0123456789abcdef" for c in digest)):
        raise ValueError(f"{path}: {DIGEST_KEY}={digest!r} is not a SHA-256 hex digest")
    return description


def read_description(model_dir: str) -> dict:
    """model.json of an export directory, validated (`check_description`).

    Raises:
      FileNotFoundError: `model_dir` has no model.json.
      ValueError: model.json is not JSON or fails a check; the message names the file.
    """
    path = os.path.join(model_dir, MODEL_JSON)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{model_dir} is not an exported model: it has no {MODEL_JSON}")
    return check_description(path, _json_file.read_object(path, "re-export the model"))


def _restore_params(model_dir: str, target) -> Any:
    """The params of an export, restored like `target`; ValueError naming the directory if unreadable."""
    params_dir = os.path.abspath(os.path.join(model_dir, PARAMS_DIR))
    if not os.path.isdir(params_dir):
        raise FileNotFoundError(f"{params_dir}: missing; {model_dir} is an incomplete export")
    try:
        return ocp.StandardCheckpointer().restore(params_dir, target)
    except Exception as error:  # orbax and tensorstore raise many kinds; all mean "unreadable"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{params_dir}: the params cannot be read ({first_line}); the export is damaged "
                         "or does not match its model.json, re-export the model") from error


def _verify_digest(model_dir: str, description: dict, params) -> None:
    """Compares the restored params with model.json's checksum (exports without one get a warning)."""
    expected = description.get(DIGEST_KEY)
    if expected is None:
        print(f"warning: {os.path.join(model_dir, MODEL_JSON)} has no {DIGEST_KEY} (an export from before "
              "checksums); the params are not verified", file=sys.stderr, flush=True)
        return
    if checkpoint.state_digest(params) != expected:
        raise ValueError(f"{os.path.join(model_dir, PARAMS_DIR)}: checksum mismatch: the params were "
                         f"modified or damaged since the export ({DIGEST_KEY} in {MODEL_JSON}); "
                         "re-export the model")


def load_exported(model_dir: str) -> ExportedModel:
    """Loads an export directory: model.json (validated), then the params, checked against the arch's
    shapes and the checksum in model.json.

    Raises:
      FileNotFoundError: no model.json or no params/.
      ValueError: a model.json problem, unreadable params or a checksum mismatch; naming the file.
    """
    description = read_description(model_dir)
    space = space_lib.SearchSpace(**description["space"])
    arch = space_lib.arch_from_dict(space, description["arch"])
    model = ExportedModel(space, arch, None, np.asarray(description["normalization"]["mean"], np.float32),
                          np.asarray(description["normalization"]["std"], np.float32), description)
    images = jax.ShapeDtypeStruct((1, space.input_size, space.input_size, space.input_channels),
                                  jnp.float32)
    target = jax.eval_shape(lambda x: model.net().init(jax.random.key(0), x)["params"], images)
    params = _restore_params(model_dir, target)
    _verify_digest(model_dir, description, params)
    return model._replace(params=params)


def make_logits_fn(model: ExportedModel) -> Callable:
    """`logits_fn(params, raw_images) -> logits [N, classes]`: normalization, then the dense subnet."""
    net = model.net()

    def logits_fn(params, images):
        return net.apply({"params": params}, augment.normalize(images, model.mean, model.std))

    return logits_fn


# ----------------------------------------------------------------------------------------------------
# Command line.


def main(argv) -> None:
    """Exports the flags' arch of the flags' run and prints a one-line summary."""
    del argv
    values = flags.FLAGS
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    with _cli.user_errors():  # a bad run directory, arch or file: one message, exit status 2
        description = export_run(values.workdir, values.arch, values.out, values.overwrite)
    print(json.dumps({"out": os.path.abspath(values.out), "arch": description["arch"],
                      "macs": description["macs"], "params": description["params"]}))


def _define_flags() -> None:
    # Only when run as a program, so that importing this module defines no flags (see cost.py).
    flags.DEFINE_string("workdir", None, "A trained run directory (config.json and checkpoints/).")
    flags.DEFINE_string("arch", None, "A tracked name (e.g. largest), 'search:BUDGET' (the best arch of "
                        'RUN_DIR/search.json) or an arch JSON, e.g. \'{"d":[0,1,0],"e":0.14}\'.')
    flags.DEFINE_string("out", None, "Export directory (model.json and params/).")
    flags.DEFINE_bool("overwrite", False, "Replace an earlier export in --out.")
    for name in ("workdir", "arch", "out"):
        flags.mark_flag_as_required(name)


def console() -> None:
    """The `superfed-export` command: the same as `python -m superfed_jax.posttrain.export`."""
    _console.quiet_backend_probe()
    _cli.run(main, _define_flags)


if __name__ == "__main__":
    console()
