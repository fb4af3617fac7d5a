"""Accuracy of an exported subnet (`superfed_jax.posttrain.export`) on a dataset split, without the supernet.

The data is read by `superfed_jax.data.load_dataset` with the run's data config from model.json (so
`--split=val` is the run's own validation split: same `val_fraction` and seed); `--data` replaces the
dataset. Images are normalized with the *exported* mean/std (the training data's), never the evaluated
data's own.

  python -m superfed_jax.posttrain.evaluate_export --model=DIR                      # the run's dataset, test split
  python -m superfed_jax.posttrain.evaluate_export --model=DIR --data=digits --split=val
  python -m superfed_jax.posttrain.evaluate_export --model=DIR --data=my_data.npz
  python -m superfed_jax.posttrain.evaluate_export --model=DIR --data=/data/cifar-10-binary.tar.gz
  superfed-evaluate --model=DIR --json      # one JSON object: exact figures, the export's absolute path

It prints one line: the export, the data and split, accuracy and loss to 4 decimals.
"""
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags
from absl import logging

from superfed_jax import _compilation_cache
from superfed_jax import _console
from superfed_jax import _cli
from superfed_jax import _readable
from superfed_jax.data import load as load_lib
from superfed_jax.federated import evaluation
from superfed_jax.federated import metric as metric_lib
from superfed_jax.posttrain import export

SPLITS = ("train", "val", "test")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def data_config(recorded: dict, data: str = "", tfds_data_dir: str = "") -> ml_collections.ConfigDict:
    """The data config to load: the run's (from model.json), with `data` replacing the dataset.

    Args:
      recorded: the run's data config (model.json `source.data`); may be empty.
      data: '' (the run's dataset), a dataset name (digits, npz, cifar10, cifar100), a .npz file or a
        CIFAR binary archive (cifar-100 in its file name means CIFAR-100).
      tfds_data_dir: a prepared TFDS data dir for cifar10/cifar100.

    Raises:
      ValueError: if `data` is none of these.
    """
    fields = {"name": "digits", "path": "", "archive": "", "tfds_data_dir": "", "val_fraction": 0.0}
    fields.update({k: v for k, v in recorded.items() if k in fields})
    if data and data != fields["name"]:  # the run's own name keeps the run's files
        fields.update(path="", archive="", tfds_data_dir="")
        if data in load_lib.DATASET_NAMES:
            fields["name"] = data
        elif data.endswith(".npz"):
            fields.update(name="npz", path=data)
        elif data.endswith(_ARCHIVE_SUFFIXES):
            name = "cifar100" if "100" in os.path.basename(data) else "cifar10"
            fields.update(name=name, archive=data)
        else:
            raise ValueError(f"--data={data!r}: expected a dataset name "
                             f"({', '.join(load_lib.DATASET_NAMES)}), a .npz file or a CIFAR binary "
                             "archive (.tar.gz)")
    if tfds_data_dir:
        fields["tfds_data_dir"] = tfds_data_dir
    return ml_collections.ConfigDict(fields)


def split_arrays(dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of one split of a `Dataset`; ValueError for an unknown or empty split."""
    if split not in SPLITS:
        raise ValueError(f"--split={split!r}: allowed {', '.join(SPLITS)}")
    images, labels = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
    if not len(labels):
        raise ValueError(f"the {split} split is empty (for 'val', the run had data.val_fraction=0)")
    return images, labels


def check_compatible(model: export.ExportedModel, images: np.ndarray, labels: np.ndarray) -> None:
    """Raises ValueError when the data's image shape or labels do not fit the model."""
    expected = tuple(model.description["input_shape"])
    if tuple(images.shape[1:]) != expected:
        raise ValueError(f"the model takes {expected} images (H, W, C), the data has "
                         f"{tuple(images.shape[1:])}")
    classes = model.family.data_shape.num_classes
    if labels.max() >= classes:
        raise ValueError(f"the model has {classes} classes, the data has label {int(labels.max())}")


def accuracy(model: export.ExportedModel, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 500) -> tuple[float, float]:
    """(top-1 accuracy, mean cross-entropy) of the exported model on raw images and labels.

    Reuses the project's evaluation loop with a single (dummy) arch: the dense subnet has its arch
    built in.
    """
    logits_fn = export.make_logits_fn(model)
    evaluate = jax.jit(evaluation.make_evaluate_fn(lambda p, x, _: logits_fn(p, x)))
    eval_set = evaluation.make_eval_set(images, labels, min(batch_size, len(labels)))
    acc, loss = jax.device_get(evaluate(model.params, jnp.zeros((1,)), eval_set))
    return float(acc[0]), float(loss[0])


def evaluate_export(model_dir: str, data: str = "", split: str = "test", batch_size: int = 500,
                    tfds_data_dir: str = "") -> dict:
    """Loads an export and its data; returns {model, data, split, examples, accuracy, loss}, and
    perplexity for a language model (a family whose `metrics` list it). For token windows, examples are
    windows, and accuracy and loss are over their scored positions.

    Raises:
      FileNotFoundError: no export in `model_dir`, or the data files are absent.
      ValueError: bad `data` or `split`, or data that does not fit the model.
    """
    if split not in SPLITS:
        raise ValueError(f"--split={split!r}: allowed {', '.join(SPLITS)}")
    if batch_size < 1:
        raise ValueError(f"--batch_size={batch_size}: must be at least 1")
    description = export.read_description(model_dir)  # fails before any data is read
    source = description.get("source", {})
    config = data_config(source.get("data", {}), data, tfds_data_dir)
    dataset = load_lib.load_dataset(config, int(source.get("seed", 0)))
    images, labels = split_arrays(dataset, split)
    model = export.load_exported(model_dir)
    check_compatible(model, images, labels)
    acc, loss = accuracy(model, images, labels, batch_size)
    result = {"model": os.path.abspath(model_dir), "data": config.name, "split": split,
              "examples": int(len(labels)), "accuracy": acc, "loss": loss}
    if "perplexity" in model.family.metrics:  # a language model: exp of the mean loss per scored token
        result["perplexity"] = metric_lib.PERPLEXITY.from_loss(loss)
    return result


def main(argv) -> None:
    """Prints the evaluation of the flags' export: one readable line, or (--json) one JSON object."""
    del argv
    _compilation_cache.enable()  # before anything compiles; the default: no config here names another
    values = flags.FLAGS
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it reads at INFO
    with _cli.user_errors():  # a bad run directory, arch or file: one message, exit status 2
        report = evaluate_export(values.model, values.data, values.split, values.batch_size,
                                 values.tfds_data_dir)
    print(_readable.json_line(report) if values.json else summary_text(report))


def summary_text(report: dict) -> str:
    """The evaluation command's summary of `report` (`evaluate_export`'s): the export (relative to the
    current directory when under it), the data, and accuracy and loss to 4 decimals (perplexity to 4
    significant digits, for a language model)."""
    metrics = [f"accuracy {_readable.fraction(report['accuracy'])}",
               f"loss {_readable.fraction(report['loss'])}"]
    if "perplexity" in report:
        metrics.append(f"perplexity {report['perplexity']:.4g}")
    return (f"{_readable.path(report['model'])} on {report['data']} {report['split']} "
            f"({_readable.count(report['examples'])} examples): {', '.join(metrics)}")


def _define_flags() -> None:
    # Only when run as a program, so that importing this module defines no flags (see cost.py).
    flags.DEFINE_string("model", None, "An export directory (superfed_jax.posttrain.export --out).")
    flags.DEFINE_string("data", "", "Dataset name, .npz file or CIFAR binary archive (default: the "
                        "exported run's dataset).")
    flags.DEFINE_string("tfds_data_dir", "", "Prepared TFDS data dir for cifar10/cifar100.")
    flags.DEFINE_string("split", "test", f"Split to evaluate: {', '.join(SPLITS)}.")
    flags.DEFINE_integer("batch_size", 500, "Images per evaluation step.")
    _cli.define_json_flag()
    flags.mark_flag_as_required("model")


ABOUT = ("superfed-evaluate: the accuracy and loss of an exported subnet (superfed-export) on a split of its "
         "run's dataset or of other data, without the supernet.\n\n"
         "usage: superfed-evaluate --model=DIR [--data=NAME|FILE.npz|ARCHIVE] [--split=train|val|test] "
         "[--batch_size=N] [--tfds_data_dir=DIR] [--json]")


def console() -> None:
    """The `superfed-evaluate` command: the same as `python -m superfed_jax.posttrain.evaluate_export`."""
    _console.quiet_backend_probe()
    _cli.run(main, _define_flags, about=ABOUT)


if __name__ == "__main__":
    console()
