"""One subnet of a trained run as a standalone dense model, and loading it back without the supernet.

Khare et al., arXiv 2301.10879 (docs/algorithm.md section 9): "the chosen subnet is then sliced out as a dense
standalone model". The slice is `subnet.extract` (first-k channels, kept blocks only); the model is
`subnet.DenseSubnet`. An export directory holds

  model.json  what is needed to rebuild and feed the model: the space fields, the arch (paper JSON form),
              the dataset's normalization mean/std, convolution implementation and dtype, MACs and params,
              and where it came from (run directory, checkpoint round, the run's data config and seed);
  params/     an orbax checkpoint of the dense params (host NumPy arrays, so it restores on any device).

  python -m superfed_jax.posttrain.export --workdir=RUN_DIR --arch=largest --out=DIR
  python -m superfed_jax.posttrain.export --workdir=RUN_DIR --arch='{"d":[1,0,1],"e":0.22}' --out=DIR
  python -m superfed_jax.posttrain.export --workdir=RUN_DIR --arch=search:macs=0.8e9 --out=DIR  # from search.json
"""
import dataclasses
import json
import os
import shutil
import sys
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import app
from absl import flags
from absl import logging

from superfed_jax import config as config_lib
from superfed_jax.data import augment
from superfed_jax.posttrain import run_dir
from superfed_jax.posttrain import search
from superfed_jax.run import resume
from superfed_jax.supernet import cost
from superfed_jax.supernet import space as space_lib
from superfed_jax.supernet import subnet

FORMAT = "superfed_jax.dense_subnet/1"
MODEL_JSON = "model.json"
PARAMS_DIR = "params"


# ----------------------------------------------------------------------------------------------------
# Which arch.


def search_result_arch(space: space_lib.SearchSpace, workdir: str, budget: str) -> space_lib.Arch:
    """The best arch that RUN_DIR/search.json holds for the budget written as `budget`."""
    path = os.path.join(workdir, search.SEARCH_FILE)
    if not os.path.exists(path):
        raise ValueError(f"arch 'search:{budget}': {path} does not exist; run superfed_jax.posttrain.search first")
    with open(path) as f:
        results = {r["budget"]: r for r in json.load(f)["results"]}
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
      `description`.
    """
    prepare_out_dir(out_dir, overwrite)
    dense = jax.device_get(subnet.extract(space, params, arch))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.abspath(os.path.join(out_dir, PARAMS_DIR)), dense)
    checkpointer.wait_until_finished()
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
    config = resume.read_saved_config(workdir)
    space = config_lib.search_space(ml_collections.ConfigDict(config))
    resolve_arch(space, space_lib.tracked_archs(space, config["eval"]["tracked"]), arch_text, workdir)
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


def read_description(model_dir: str) -> dict:
    """model.json of an export directory; FileNotFoundError / ValueError when it is not one."""
    path = os.path.join(model_dir, MODEL_JSON)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{model_dir} is not an exported model: it has no {MODEL_JSON}")
    with open(path) as f:
        description = json.load(f)
    if description.get("format") != FORMAT:
        raise ValueError(f"{path}: format {description.get('format')!r}, expected {FORMAT!r}")
    return description


def load_exported(model_dir: str) -> ExportedModel:
    """Loads an export directory: model.json, then the params, checked against the arch's shapes."""
    description = read_description(model_dir)
    space = space_lib.SearchSpace(**description["space"])
    arch = space_lib.arch_from_dict(space, description["arch"])
    model = ExportedModel(space, arch, None, np.asarray(description["normalization"]["mean"], np.float32),
                          np.asarray(description["normalization"]["std"], np.float32), description)
    images = jax.ShapeDtypeStruct((1, space.input_size, space.input_size, space.input_channels),
                                  jnp.float32)
    target = jax.eval_shape(lambda x: model.net().init(jax.random.key(0), x)["params"], images)
    params = ocp.StandardCheckpointer().restore(os.path.abspath(os.path.join(model_dir, PARAMS_DIR)),
                                                target)
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
    try:
        description = export_run(values.workdir, values.arch, values.out, values.overwrite)
    except (ValueError, FileNotFoundError) as error:
        if os.environ.get("SUPERFED_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)  # a user error: a message, no traceback
        sys.exit(2)
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
    _define_flags()
    app.run(main)


if __name__ == "__main__":
    console()
