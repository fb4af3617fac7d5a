"""One subnet of a trained run as a standalone dense model, and loading it back without the supernet.

Khare et al., arXiv 2301.10879 (docs/algorithm.md section 9): "the chosen subnet is then sliced out as a dense
standalone model". The slice is the family's `extract` (for the OFA-ResNet: first-k channels, kept blocks
only); the model is its `dense_apply`. Only the `supernet.family.Family` interface is used, so any family
exports. An export directory holds

  model.json  what is needed to rebuild and feed the model: the family's name and space fields
              (`Family.space_dict`), the arch (the family's JSON form) and what the family says of its
              dense subnet (`Family.dense_description`), the input shape and classes, the dataset's
              normalization mean/std, convolution implementation and dtype, MACs and params, and where it
              came from (run directory, checkpoint round, the run's data config and seed); and
              `params_sha256`, the checksum of the dense params (as training checkpoints keep one);
  params/     an orbax checkpoint of the dense params (host NumPy arrays, so it restores on any device).

Loading checks everything before it is used: model.json is validated field by field (family known, space
and arch valid, input shape and classes matching the space, mean finite, std finite and > 0, a known
conv_impl and dtype), and the restored params must match their checksum; every error names the file. A
model.json without "family" (written before families existed) is an OFA-ResNet's.

  python -m superfed_jax.posttrain.export --workdir=RUN_DIR --arch=largest --out=DIR
  python -m superfed_jax.posttrain.export --workdir=RUN_DIR --arch='{"d":[1,0,1],"e":0.22}' --out=DIR
  python -m superfed_jax.posttrain.export --workdir=RUN_DIR --arch=search:macs=0.8e9 --out=DIR  # from search.json
"""
import json
import os
import shutil
import sys
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import flags
from absl import logging

from superfed_jax import _compilation_cache
from superfed_jax import _console
from superfed_jax import _cli
from superfed_jax import _json_file
from superfed_jax import _readable
from superfed_jax import config as config_lib
from superfed_jax.data import augment
from superfed_jax.posttrain import latency
from superfed_jax.posttrain import run_dir
from superfed_jax.posttrain import search
from superfed_jax.reports import search_front
from superfed_jax.run import checkpoint
from superfed_jax.supernet import archs as archs_lib
from superfed_jax.supernet import conv
from superfed_jax.supernet import family as family_lib

FORMAT = "superfed_jax.dense_subnet/1"
MODEL_JSON = "model.json"
PARAMS_DIR = "params"
DIGEST_KEY = "params_sha256"
# The family of a model.json without a "family" key: exports written before families existed.
OLD_EXPORT_FAMILY = "ofa_resnet"


# ----------------------------------------------------------------------------------------------------
# Which arch.


def search_result_arch(family: family_lib.Family, workdir: str, budget: str, supernet="read"):
    """The best arch that RUN_DIR/search.json holds for the budget written as `budget`.

    Args:
      supernet: (round, digest) of the supernet the arch will be sliced from; "read": the run's newest
        checkpoint on disk. A search.json of another supernet is refused (its best arch is not this
        supernet's best).

    Raises:
      search_front.StaleSearch: search.json searched another checkpoint (the message says how to rerun it).
      ValueError: no search.json, no such budget in it, or a malformed file.
    """
    path = os.path.join(workdir, search.SEARCH_FILE)
    if not os.path.exists(path):
        raise ValueError(f"arch 'search:{budget}': {path} does not exist; run superfed_jax.posttrain.search first")
    content = _json_file.read_object(path, "run superfed_jax.posttrain.search again to rewrite it")
    found = content.get("results")
    if not isinstance(found, list) or not all(isinstance(r, dict) and "budget" in r for r in found):
        raise ValueError(f"{path}: 'results' is not a list of search results with a 'budget' each; run "
                         "superfed_jax.posttrain.search again to rewrite it")
    search_front.check_current(workdir, content, supernet)
    results = {r["budget"]: r for r in found}
    if budget not in results:
        raise ValueError(f"arch 'search:{budget}': {path} has no budget {budget!r}; it has "
                         f"{list(results)}")
    return family.arch_from_json(results[budget]["best"]["arch"])


def resolve_arch(family: family_lib.Family, tracked: dict, text: str, workdir: str, supernet="read"):
    """An arch from a tracked name ('largest', ...), 'search:BUDGET' or the family's JSON form.

    `supernet`: (round, digest) of the supernet exported from, for 'search:' ("read": the newest on disk).

    Raises:
      ValueError: naming the allowed forms, or saying why the arch is outside the space (or, for
        'search:', why search.json cannot be used).
    """
    text = text.strip()
    if text in tracked:
        return tracked[text]
    if text.startswith("search:"):
        return search_result_arch(family, workdir, text[len("search:"):], supernet)
    if not text.startswith("{"):
        raise ValueError(f"arch {text!r}: give a tracked name ({', '.join(tracked)}), "
                         "'search:BUDGET' (the best arch of RUN_DIR/search.json) or an arch JSON such as "
                         f"'{json.dumps(family.arch_to_json(family.smallest()))}'")
    return archs_lib.parse_arch(family, text)


# ----------------------------------------------------------------------------------------------------
# Writing.


def describe(family: family_lib.Family, arch, mean, std, conv_impl: str, dtype: str,
             source: dict) -> dict:
    """The model.json content of one exported subnet.

    Raises:
      ValueError: the family's `dense_description` uses a key of model.json's own.
    """
    data = family.data_shape
    head = {"format": FORMAT, "family": family_lib.family_ref(family), "space": family.space_dict(),
            "arch": family.arch_to_json(arch)}
    tail = {
        "input_shape": [int(n) for n in data.input_shape],
        "num_classes": int(data.num_classes),
        "normalization": {"mean": np.asarray(mean, np.float32).tolist(),
                          "std": np.asarray(std, np.float32).tolist()},
        "conv_impl": conv_impl,
        "dtype": dtype,
        "macs": family.macs(arch),
        "params": family.params(arch),
        "source": source,
    }
    extra = family.dense_description(arch)
    clashes = sorted(set(extra) & (set(head) | set(tail) | {DIGEST_KEY}))
    if clashes:
        raise ValueError(f"family {family.name!r}: dense_description uses model.json's own keys {clashes}")
    return {**head, **extra, **tail}


def check_out_dir(out_dir: str, overwrite: bool) -> None:
    """Raises ValueError when `out_dir` is (or lies under) a file, or holds an earlier export and
    `overwrite` is off."""
    blocking = _file_on_path(out_dir)
    if blocking:
        where = "is a file" if blocking == out_dir else f"lies under {blocking}, which is a file"
        raise ValueError(f"--out={out_dir} {where}; --out must be a directory (the export writes "
                         f"{MODEL_JSON} and {PARAMS_DIR}/ into it): choose another --out")
    existing = [n for n in (MODEL_JSON, PARAMS_DIR) if os.path.exists(os.path.join(out_dir, n))]
    if existing and not overwrite:
        raise ValueError(f"{out_dir} already holds an export ({', '.join(existing)}); pass --overwrite "
                         "or choose another --out")


def _file_on_path(path: str) -> str:
    """The nearest existing part of `path` (itself or a parent) if it is not a directory, else ''."""
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return ""
        path = parent
    return path if path and not os.path.isdir(path) else ""


def prepare_out_dir(out_dir: str, overwrite: bool) -> None:
    """Creates `out_dir`; removes an earlier export there when `overwrite` (else refuses)."""
    check_out_dir(out_dir, overwrite)
    # model.json first: until the new one is written, the directory is not taken for a complete export.
    if os.path.exists(os.path.join(out_dir, MODEL_JSON)):
        os.remove(os.path.join(out_dir, MODEL_JSON))
    shutil.rmtree(os.path.join(out_dir, PARAMS_DIR), ignore_errors=True)
    os.makedirs(out_dir, exist_ok=True)


def export_subnet(out_dir: str, family: family_lib.Family, params, arch, description: dict,
                  overwrite: bool = False) -> dict:
    """Writes the dense params of `arch` (sliced from supernet `params`) and model.json to `out_dir`.

    Args:
      out_dir: the export directory (created).
      family: the supernet family.
      params: supernet params.
      arch: one concrete arch of the family.
      description: the model.json content (`describe`).
      overwrite: replace an earlier export in `out_dir`.

    Returns:
      `description` with the params' checksum added (`DIGEST_KEY`), as written to model.json.
    """
    prepare_out_dir(out_dir, overwrite)
    dense = jax.device_get(family.extract(params, arch))
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
    # search.json is compared with the checkpoint actually restored (the newest intact one).
    arch = resolve_arch(loaded.family, run.tracked, arch_text, loaded.workdir, (loaded.round, loaded.digest))
    source = {"workdir": loaded.workdir, "checkpoint_round": loaded.round, "seed": config["seed"],
              "data": config["data"]}
    description = describe(loaded.family, arch, run.dataset.mean, run.dataset.std,
                           config["model"]["conv_impl"], config["model"]["dtype"], source)
    return export_subnet(out_dir, loaded.family, loaded.params, arch, description, overwrite)


def export_run(workdir: str, arch_text: str, out_dir: str, overwrite: bool = False) -> dict:
    """Loads the trained run in `workdir` and exports one subnet (see `export_loaded`).

    The arch and the output directory are checked before the run is loaded: which archs exist depends
    only on the config's family and space fields, not on the data.

    Raises:
      FileNotFoundError: `workdir` has no config.json or no checkpoint.
      ValueError: the arch is unknown or outside the run's space, or `out_dir` holds an export.
    """
    run_dir.check_run_dir(workdir)
    config = run_dir.saved_config(workdir)  # a damaged one: ValueError naming the file and a copy
    family = config_lib.make_family(config)
    resolve_arch(family, archs_lib.tracked_archs(family, config.eval.tracked), arch_text, workdir)
    check_out_dir(out_dir, overwrite)
    return export_loaded(run_dir.load_trained_run(workdir), arch_text, out_dir, overwrite)


# ----------------------------------------------------------------------------------------------------
# Loading, with no supernet involved.


class ExportedModel(NamedTuple):
    """An exported subnet: feed it raw inputs through `make_logits_fn` (the dense forward is
    `family.dense_apply(params, inputs, arch)`)."""

    family: family_lib.Family  # with the export's conv_impl and dtype
    arch: Any  # one concrete arch of the family
    params: Any  # the dense subnet's params
    mean: np.ndarray | None  # float32 [C] of images; None for token inputs (never normalized)
    std: np.ndarray | None
    description: dict  # model.json


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


def _family_and_arch(path: str, description: dict, conv_impl: str = "xla",
                     dtype: str = "float32") -> tuple:
    """The family (computing with `conv_impl` and `dtype`) and arch of model.json, each checked;
    ValueError naming the file otherwise. No "family" key: an export from before families (the
    OFA-ResNet)."""
    name = description.get("family", OLD_EXPORT_FAMILY)
    if not isinstance(name, str):
        raise ValueError(f"{path}: family={name!r} is not a str")
    try:
        family_class = family_lib.family_class(name)
    except ValueError as error:
        raise ValueError(f"{path}: family={name!r} cannot be loaded: {error}") from error
    fields = _require(path, description, "space", dict, "space")
    try:
        family = family_class.from_config(fields, conv_impl=conv_impl, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: space is not a valid search space: {error}") from error
    if "arch" not in description:
        raise ValueError(f"{path}: arch is missing; re-export the model")
    try:  # the family's JSON form (an object for the OFA-ResNet), checked by the family
        arch = family.arch_from_json(description["arch"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from error
    return family, arch


def check_description(path: str, description) -> dict:
    """Validates the content of a model.json read from `path`; returns it.

    Checks the format, the family, space and arch, that input_shape and num_classes match the space,
    that the normalization mean is finite and the std finite and > 0 (one value per image channel), that
    conv_impl and dtype are known, and that the params checksum (if present) is a SHA-256 hex digest.

    Raises:
      ValueError: naming `path`, the field and what is allowed.
    """
    if not isinstance(description, dict):
        raise ValueError(f"{path}: holds a {type(description).__name__}, not a JSON object")
    if description.get("format") != FORMAT:
        raise ValueError(f"{path}: format {description.get('format')!r}, expected {FORMAT!r}")
    family, _ = _family_and_arch(path, description)
    data = family.data_shape
    expected = [int(n) for n in data.input_shape]
    if description.get("input_shape") != expected:
        raise ValueError(f"{path}: input_shape={description.get('input_shape')!r} does not match the "
                         f"space's {expected}")
    if description.get("num_classes") != data.num_classes:
        raise ValueError(f"{path}: num_classes={description.get('num_classes')!r} does not match the "
                         f"space's {data.num_classes}")
    if family.batch_kind == family_lib.IMAGES:  # token inputs are not normalized
        channels = expected[-1]
        normalization = _require(path, description, "normalization", dict, "normalization")
        _channel_values(path, normalization.get("mean"), "normalization.mean", channels)
        std = _channel_values(path, normalization.get("std"), "normalization.std", channels)
        if not np.all(std > 0):
            raise ValueError(f"{path}: normalization.std={normalization['std']!r}: every value must be > 0")
    conv_impl = _require(path, description, "conv_impl", str, "conv_impl")
    if conv_impl not in conv.CONV_IMPLS:
        raise ValueError(f"{path}: conv_impl={conv_impl!r}; allowed values are {list(conv.CONV_IMPLS)}")
    dtype = _require(path, description, "dtype", str, "dtype")
    if dtype not in family_lib.DTYPES:
        raise ValueError(f"{path}: dtype={dtype!r}; allowed values are {list(family_lib.DTYPES)}")
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
    checkpoint.quiet_background_reports()  # a damaged export: one message, not orbax's threads' reports
    try:
        return ocp.StandardCheckpointer().restore(params_dir, target)
    except Exception as error:  # orbax and tensorstore raise many kinds; all mean "unreadable"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{params_dir}: the params cannot be read ({first_line}); the export is damaged "
                         "or does not match its model.json (an edited space or arch), re-export the model"
                         ) from error


def _check_shapes(model_dir: str, target, params) -> None:
    """The restored params must have the shapes model.json's space and arch imply (`target`).

    The checksum covers the params, not model.json: an edited width in its space restores (orbax takes the
    stored shapes), passes the checksum and only fails in the first forward pass, as a flax
    ScopeParamShapeError traceback. Checked here, leaf by leaf, the mistake is one message.
    """
    expected = dict(jax.tree_util.tree_flatten_with_path(target)[0])
    found = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    wrong = [f"{jax.tree_util.keystr(path)}: model.json implies {tuple(leaf.shape)}, params/ hold "
             f"{tuple(np.shape(found[path]))}"
             for path, leaf in expected.items()
             if path in found and tuple(np.shape(found[path])) != tuple(leaf.shape)]
    if wrong or set(expected) != set(found):
        details = "; ".join(wrong[:3]) + (f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else "")
        raise ValueError(f"{os.path.join(model_dir, MODEL_JSON)} does not describe the params in "
                         f"{os.path.join(model_dir, PARAMS_DIR)}: {details or 'other parameters'}; its space or "
                         "arch was edited after the export: restore model.json, or re-export the model")


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
    family, arch = _family_and_arch(os.path.join(model_dir, MODEL_JSON), description,
                                    description["conv_impl"], description["dtype"])
    mean = std = None
    if family.batch_kind == family_lib.IMAGES:
        normalization = description["normalization"]
        mean, std = (np.asarray(normalization[k], np.float32) for k in ("mean", "std"))
    model = ExportedModel(family, arch, None, mean, std, description)
    target = jax.eval_shape(lambda x: family.dense_init(jax.random.key(0), x, arch),
                            latency.input_spec(family, 1))
    params = _restore_params(model_dir, target)
    _check_shapes(model_dir, target, params)
    _verify_digest(model_dir, description, params)
    return model._replace(params=params)


def make_logits_fn(model: ExportedModel) -> Callable:
    """`logits_fn(params, raw_inputs) -> logits`: normalization (of images), then the dense subnet."""
    family, arch = model.family, model.arch
    images = family.batch_kind == family_lib.IMAGES

    def logits_fn(params, inputs):
        if images:
            inputs = augment.normalize(inputs, model.mean, model.std)
        return family.dense_apply(params, inputs, arch)

    return logits_fn


# ----------------------------------------------------------------------------------------------------
# Command line.


def main(argv) -> None:
    """Exports the flags' arch of the flags' run and prints a one-line summary."""
    del argv
    _compilation_cache.enable()  # before anything compiles; the default: no config here names another
    values = flags.FLAGS
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    with _cli.user_errors():  # a bad run directory, arch or file: one message, exit status 2
        description = export_run(values.workdir, values.arch, values.out, values.overwrite)
    result = {"out": os.path.abspath(values.out), "arch": description["arch"], "macs": description["macs"],
              "params": description["params"]}
    print(_readable.json_line(result) if values.json else summary_text(result))


def summary_text(result: dict) -> str:
    """The export command's summary of `result` ({out, arch, macs, params}): where the export went (relative
    to the current directory when under it) and the subnet's arch and size (forward MACs per example)."""
    arch = json.dumps(result["arch"], separators=(",", ":"))
    return (f"exported {arch} to {_readable.path(result['out'])}: {_readable.si(result['macs'], 'MACs')}, "
            f"{_readable.count(result['params'])} params")


ABOUT = ("superfed-export: one subnet of a trained run as a standalone dense model (model.json and params/), "
         "loadable with superfed_jax.load_exported and evaluated by superfed-evaluate.\n\n"
         "usage: superfed-export --workdir=RUN_DIR --arch=NAME|search:BUDGET|JSON --out=DIR [--overwrite] "
         "[--json]")


def _define_flags() -> None:
    # Only when run as a program, so that importing this module defines no flags (see cost.py).
    flags.DEFINE_string("workdir", None, "A trained run directory (config.json and checkpoints/).")
    flags.DEFINE_string("arch", None, "A tracked name (e.g. largest), 'search:BUDGET' (the best arch of "
                        'RUN_DIR/search.json) or an arch JSON, e.g. \'{"d":[0,1,0],"e":0.14}\'.')
    flags.DEFINE_string("out", None, "Export directory (model.json and params/).")
    flags.DEFINE_bool("overwrite", False, "Replace an earlier export in --out.")
    _cli.define_json_flag()
    for name in ("workdir", "arch", "out"):
        flags.mark_flag_as_required(name)


def console() -> None:
    """The `superfed-export` command: the same as `python -m superfed_jax.posttrain.export`."""
    _console.quiet_backend_probe()
    _cli.run(main, _define_flags, about=ABOUT)


if __name__ == "__main__":
    console()
