"""A trained run directory, loaded for work after training: search, export, evaluation of subnets.

`load_trained` rebuilds the run from its config.json and restores the newest intact checkpoint;
`load_trained_run` also puts the supernet and the validation and test splits on one device;
`check_run_dir` fails fast, before any data is read.
"""
import os
import sys
from typing import Any, NamedTuple

import jax

from superfed_jax import config as config_lib
from superfed_jax import validation
from superfed_jax.federated import evaluation
from superfed_jax.federated import round as federated_round
from superfed_jax.run import build as build_lib
from superfed_jax.run import checkpoint
from superfed_jax.run import resume
from superfed_jax.supernet import family as family_lib


def check_run_dir(workdir: str) -> None:
    """Fails fast (before any data is loaded) when `workdir` has no config.json or no checkpoint.

    Raises:
      FileNotFoundError: naming what is missing.
    """
    if not os.path.isfile(os.path.join(workdir, "config.json")):
        raise FileNotFoundError(f"{workdir} is not a run directory: it has no config.json")
    checkpoints = checkpoint.checkpoint_dir(workdir)
    if not os.path.isdir(checkpoints) or not os.listdir(checkpoints):
        raise FileNotFoundError(f"{workdir} has no checkpoint ({checkpoints} is empty or missing); train "
                                "the run first")


def check_config_matches_checkpoints(workdir: str) -> None:
    """config.json must describe the run the newest checkpoint holds, as training's resume requires.

    Each checkpoint keeps its own copy of the config it was trained with (its host JSON). An edited
    config.json (another space, another family) would build a supernet of other shapes, and orbax's
    restore would then fail on every checkpoint, which reads as "their files are damaged", after a
    screenful of asyncio tracebacks. Compared before anything is built or restored; the fields that may
    change on resume (rounds, cadences, ...) may differ here too.

    Raises:
      ValueError: naming config.json, the fields that differ, and the copy to restore it from.
    """
    saved = checkpoint.saved_configs(workdir)
    current = resume.read_saved_config(workdir)
    if not saved or current is None:
        return
    step, trained = saved[0]
    differences = resume.config_differences(trained, current)
    if differences:
        path = os.path.join(workdir, "config.json")
        raise ValueError(
            f"{path} differs from the config the run was trained with (the 'config' entry of "
            f"{checkpoint.host_json_path(workdir, step)}), in fields that shape the supernet or its data: "
            + "; ".join(differences) + ". The checkpoints are intact; config.json was edited after "
            "training: restore it from that entry (or train a run of the new config in another workdir)")


def _saved_family(saved: dict) -> str:
    """The `model.family` of a saved config (the default family when absent: runs from before families)."""
    model = saved.get("model")
    family = model.get("family") if isinstance(model, dict) else None
    return family if isinstance(family, str) else family_lib.DEFAULT_FAMILY


def saved_config(workdir: str):
    """The run's config (a ConfigDict): its config.json over today's defaults, checked like a new run's.

    Fields added since the run was trained keep their defaults. The data files are not checked (a run
    directory may be read on another machine).

    Raises:
      FileNotFoundError: `workdir` has no config.json.
      ValueError: config.json cannot be read, is not a JSON object, has fields this code does not know, or
        values a run would refuse; the message names the file.
    """
    path = os.path.join(workdir, "config.json")
    saved = resume.read_saved_config(workdir)
    if saved is None:
        raise FileNotFoundError(f"{workdir} is not a run directory: it has no config.json")
    try:
        # The saved run's family decides the fields of its space section.
        config = config_lib.base_config(_saved_family(saved))
        for name, value in saved.items():  # ConfigDict.update would say only "'list' object has no ..."
            if name in config and hasattr(config[name], "items") and not isinstance(value, dict):
                raise ValueError(f"{name}: {value!r} is not a section (a JSON object of fields)")
        config.update(saved)
        validation.check_config(config, check_files=False)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        message = str(error).strip() or type(error).__name__
        raise ValueError(f"{path}: not a usable run config: {message}; "
                         f"{resume.saved_config_advice(workdir)}") from error
    return config


def load_trained(workdir: str) -> tuple[build_lib.RunSetup, federated_round.ServerState, str]:
    """The run in `workdir` rebuilt from its config.json, with the newest intact checkpoint's state and
    that checkpoint's digest (the SHA-256 of its state, verified on restore: it names these weights).

    Raises:
      FileNotFoundError: `workdir` has no config.json or no checkpoint.
    """
    check_run_dir(workdir)  # before loading data and compiling
    check_config_matches_checkpoints(workdir)  # an edited config.json is not a damaged checkpoint
    run = build_lib.build(saved_config(workdir))
    # clean_unfinished=False: only reading; a save in progress there belongs to a run still training.
    manager = checkpoint.make_manager(workdir, keep=None, clean_unfinished=False)
    restored = checkpoint.restore_newest_intact(manager, run.state)
    if restored is None:  # the folder held only an unfinished save
        raise FileNotFoundError(f"{workdir} has no finished checkpoint; train the run first")
    for skipped in restored.skipped:
        print(f"warning: skipped damaged checkpoint {skipped}", file=sys.stderr, flush=True)
    return run, restored.state, str(restored.host["digest"])


class TrainedRun(NamedTuple):
    """A trained run, ready to evaluate subnets on one device."""

    workdir: str  # absolute
    config: dict  # the run's config.json
    run: build_lib.RunSetup  # as `build.build` made it (family, dataset, tracked archs, jitted evaluate, ...)
    params: Any  # the restored supernet params, on one device
    round: int  # rounds trained by the restored checkpoint
    val_set: evaluation.EvalSet | None  # on the same device; None when the run holds out no validation
    test_set: evaluation.EvalSet | None
    digest: str = ""  # SHA-256 of the restored checkpoint's state (its host JSON's "digest")

    @property
    def family(self) -> family_lib.Family:
        """The run's supernet family (input shape and classes from its data)."""
        return self.run.family


def load_trained_run(workdir: str, eval_batch_size: int = 0) -> TrainedRun:
    """Restores the newest checkpoint of `workdir` and places params and splits on the first device.

    One device, not the run's mesh: evaluation replicated over a mesh would repeat the same work on every
    device. Splits are batched by `eval_batch_size` (0: the run's eval.batch_size), never by more than a
    split holds, so a small split is not padded.

    Raises:
      FileNotFoundError: no config.json or no checkpoint.
    """
    run, state, digest = load_trained(workdir)
    config = resume.read_saved_config(workdir)  # as saved: read by load_trained just before
    device = jax.devices()[0]
    batch = eval_batch_size or config["eval"]["batch_size"]

    def place(images, labels):
        if not len(labels):
            return None
        return jax.device_put(evaluation.make_eval_set(images, labels, min(batch, len(labels))), device)

    return TrainedRun(os.path.abspath(workdir), config, run, jax.device_put(state.params, device),
                      int(state.round), place(run.dataset.x_val, run.dataset.y_val),
                      place(run.dataset.x_test, run.dataset.y_test), digest)
