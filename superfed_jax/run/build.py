"""Everything a run builds from its config before the first round: data on the devices, the compiled
round and evaluation, and the initial server state (`build(config) -> RunSetup`).

Also the translations from config to the federated layer's static settings (`round_settings`,
`client_layout`, `execution`) and the up-front memory check, which the dry run and the post-training tools reuse.
"""
from typing import Any, Callable, NamedTuple

import jax
import ml_collections

from superfed_jax import config as config_lib
from superfed_jax import config_schema
from superfed_jax import data as data_lib
from superfed_jax import validation
from superfed_jax.data import partition as partition_lib
from superfed_jax.federated import client as client_lib
from superfed_jax.federated import client_optimizer
from superfed_jax.federated import evaluation
from superfed_jax.federated import objective
from superfed_jax.federated import placement
from superfed_jax.federated import round as federated_round
from superfed_jax.federated import server_optimizer
from superfed_jax.federated import sharding
from superfed_jax.run import memory
from superfed_jax.supernet import archs as archs_lib
from superfed_jax.supernet import family as family_lib


def round_settings(config, family: family_lib.Family) -> federated_round.RoundSettings:
    """Static round settings from the config, with derived defaults resolved."""
    fl = config.fl
    pool = family_lib.stack(archs_lib.parse_archs(family, fl.pool, "fl.pool")) if fl.pool else None
    return federated_round.RoundSettings(
        num_clients=fl.num_clients, clients_per_round=fl.clients_per_round,
        chunk_size=fl.chunk_size or fl.clients_per_round, heuristic=fl.heuristic, pool=pool,
        count_random_extremes=fl.count_random_extremes, beta_schedule=fl.beta_schedule,
        beta0=fl.beta0,
        # -1 means "end as plain averaging" (docs/algorithm.md 4.1: betaT = 1/P).
        beta_final=1.0 / fl.clients_per_round if fl.beta_final < 0 else fl.beta_final,
        decay_rounds=max(1, int(fl.decay_fraction * fl.rounds)), batch_size=config.client.batch_size,
        # Configs saved before the field existed aggregated without it (`absent`).
        weight_by_size=_field(config, "fl.weight_by_size"),
        dp_clip_norm=_field(config, "dp.clip_norm"), dp_noise_multiplier=_field(config, "dp.noise_multiplier"),
        smallest_clients=_field(config, "fl.smallest_clients"))


def _field(config, name: str):
    """The dotted field `name` of `config`, or its schema's `absent` value for a config saved before it
    existed (such a run trained without it)."""
    section, key = name.split(".")
    return config.get(section, {}).get(key, config_schema.field(name).absent)


def server_section(config) -> ml_collections.ConfigDict:
    """The config's server section, with every field a config saved before it existed lacks at its
    `absent` value (the mean, as the paper)."""
    names = [f for f in config_schema.field_names() if f.startswith("server.")]
    return ml_collections.ConfigDict({name.split(".")[1]: _field(config, name) for name in names})


def client_layout(config, mesh) -> str:
    """`fl.client_layout`, with 'auto' resolved: side by side on one CPU device, vmap otherwise.

    Side by side keeps a chunk's clients on one device, so a multi-device mesh always uses vmap.
    """
    layout = config.fl.client_layout
    if layout == "auto":
        single_cpu = mesh.devices.size == 1 and jax.default_backend() == "cpu"
        layout = "side_by_side" if single_cpu else "vmap"
    if layout == "side_by_side" and mesh.devices.size > 1:
        raise ValueError(f"fl.client_layout='side_by_side' needs one device, the mesh has "
                         f"{mesh.devices.size}; use 'vmap' or 'auto'")
    return layout


def execution(config, layout: str, family: family_lib.Family) -> str:
    """`model.execution`, with 'auto' resolved per backend, client layout and net size (docs/performance.md 16).

    'auto' picks only what was measured faster: sliced for clients side by side on one CPU device where the
    family's measured rule says the saved arithmetic outweighs the longer compile (`Family.sliced_pays_off`:
    the OFA-ResNet from 0.1 GMACs per image, the TCN always); the
    masked reference wherever no measurement exists yet (vmapped clients, accelerators), and for a family
    without a sliced execution (`Family.sliced` None), where 'sliced' is an error.
    """
    # Configs saved before the field existed ran masked (`absent`).
    chosen = config.model.get("execution", config_schema.field("model.execution").absent)
    if chosen == "sliced" and family.sliced is None:
        raise ValueError(f"model.execution='sliced': the family {family.name!r} has no sliced execution; "
                         "use 'masked' or 'auto'")
    if chosen != "auto":
        return chosen
    if family.sliced is None:
        return "masked"
    measured_faster = (jax.default_backend() == "cpu" and layout == "side_by_side"
                       and family.sliced_pays_off())
    return "sliced" if measured_faster else "masked"


def check_memory(config, family: family_lib.Family, settings, mesh, data) -> None:
    """Stops before compiling, suggesting a chunk size, when a round would not fit a device (memory.py)."""
    if not config.memory.check:
        return
    available = (config.memory.available_gib * 2 ** 30 if config.memory.available_gib
                 else memory.device_memory_bytes())
    memory.check_round_memory(
        family, available, batch_size=config.client.batch_size, chunk_size=settings.chunk_size,
        clients_per_round=settings.clients_per_round, num_devices=mesh.devices.size,
        dtype=config.model.dtype, optimizer_slots=client_optimizer.state_slots(config.client),
        server_slots=server_optimizer.state_slots(server_section(config)),
        data_bytes=memory.data_bytes(data))


class RunSetup(NamedTuple):
    """Everything built from a config before the first round."""

    family: family_lib.Family  # the final family: input shape and classes from the data
    dataset: data_lib.Dataset
    settings: federated_round.RoundSettings
    tracked: dict  # name -> arch evaluated during training
    mesh: Any
    data: federated_round.FederatedData
    state: federated_round.ServerState  # the initial state (round 0)
    round_fn: Callable  # jitted, donates the state
    evaluate: Callable  # jitted
    eval_sets: dict  # split name -> evaluation.EvalSet, on the devices


def _train_clients_fn(config, mesh, family: family_lib.Family, loss_fn, max_client_size: int, layout: str,
                      execution_: str) -> Callable:
    """The chunk-training function of the round: clients side by side or vmapped (`client_layout`),
    with a per-chunk envelope when the execution is sliced, and the client's optimizer (docs/algorithm.md
    5.1), which gets the client's subnet mask only if it reads it."""
    optimizer = client_optimizer.make_client_optimizer(config.client)
    schedule = dict(epochs=config.client.epochs, batch_size=config.client.batch_size,
                    max_size=max_client_size, unroll=config.client.scan_unroll)
    envelope, form, subnet_mask = None, client_lib.IDENTITY_FORM, family.masks
    if execution_ == "sliced":  # clients train the family's pieces of the params (`Family.sliced`)
        sliced = family.sliced
        envelope = sliced.envelope
        form = client_lib.ParamsForm(sliced.to_pieces, sliced.from_pieces)
        subnet_mask = lambda arch_and_envelope: family.masks(arch_and_envelope[0])  # noqa: E731
    if not client_optimizer.needs_subnet(config.client):
        subnet_mask = None  # the default rule: the program of releases before the options, unchanged
    schedule.update(params_form=form, subnet_mask=subnet_mask)
    if layout == "side_by_side":
        return client_lib.make_side_by_side_update(loss_fn, optimizer, chunk_envelope=envelope, **schedule)
    return client_lib.vmap_clients(client_lib.make_client_update(loss_fn, optimizer, **schedule), envelope)


def eval_batch_size(batch_size: int, split_size: int) -> int:
    """`eval.batch_size` capped at the split's size.

    A batch larger than the split would only pad it with zeros (`eval.batch_size=999999999` asked for
    60 GiB); the capped batch gives the same sums, since padded examples carry weight 0.
    """
    return max(1, min(int(batch_size), int(split_size)))


def _eval_sets(dataset, batch_size: int, mesh) -> dict:
    """The validation and test splits (those that are not empty) padded to batches, on the devices."""
    return {split: jax.tree.map(lambda x: sharding.put_global(x, sharding.replicated(mesh)),
                                evaluation.make_eval_set(x, y, eval_batch_size(batch_size, len(y))))
            for split, x, y in (("val", dataset.x_val, dataset.y_val),
                                ("test", dataset.x_test, dataset.y_test)) if len(y)}


def build(config: ml_collections.ConfigDict) -> RunSetup:
    """Loads data, partitions it, places it on the devices and builds the compiled functions."""
    validation.check_config(config)  # every field, before any data is read or anything compiles
    dataset = data_lib.load_dataset(config.data, config.seed)
    natural = (partition_lib.natural_partition(dataset.client_train, config.data.min_client_size)
               if config.data.partition == "natural" else None)  # the data's clients, counted up front
    images = dataset.x_train.ndim == 4  # token windows [N, T] have no augmentation to fit
    validation.check_against_data(config, len(dataset.y_train),
                                  dataset.x_train.shape[1:] if images else None, natural)
    family = config_lib.make_family(config, family_lib.DataShape(tuple(dataset.x_train.shape[1:]),
                                                                 dataset.num_classes))
    settings = round_settings(config, family)
    mesh = sharding.make_mesh()
    data = placement.place_federated_data(dataset, config, mesh)
    check_memory(config, family, settings, mesh, data)
    params = family.init(jax.random.key(config.seed), out_sharding=sharding.replicated(mesh))
    server_opt = server_optimizer.make_server_optimizer(server_section(config))
    state = jax.device_put(federated_round.init_state(params, config.seed, config.fl.num_clients, server_opt),
                           sharding.replicated(mesh))
    layout = client_layout(config, mesh)
    execution_ = execution(config, layout, family)
    loss_fn = objective.make_loss_fn(family, dataset.mean, dataset.std, config.data, execution_)
    train_clients = _train_clients_fn(config, mesh, family, loss_fn, int(data.index_table.shape[1]), layout,
                                      execution_)
    round_fn = jax.jit(federated_round.make_round_fn(family, settings, train_clients, mesh,
                                                     server_opt=server_opt), donate_argnums=0)
    evaluate = jax.jit(evaluation.make_evaluate_fn(
        objective.make_logits_fn(family, dataset.mean, dataset.std)))
    return RunSetup(family, dataset, settings, archs_lib.tracked_archs(family, config.eval.tracked), mesh,
                    data, state, round_fn, evaluate, _eval_sets(dataset, config.eval.batch_size, mesh))


def compile_ahead(run: RunSetup, state: federated_round.ServerState) -> None:
    """Compiles the run's round and its evaluation of the tracked archs (every split) for `state`'s shapes.

    For a run to announce and time its compilation (`progress.Progress.compile`) instead of a silent first
    round and first evaluation. `jit(f).lower(*args).compile()` fills the cache the call `f(*args)` reads,
    so each compiles once (tests/test_launch.py counts the compilations of a run); the arguments are
    those `train` and `evaluation.evaluate_tracked` pass. Lowering reads only shapes, so the donated state
    is still usable.
    """
    run.round_fn.lower(state, run.data).compile()
    archs = family_lib.stack(list(run.tracked.values()))
    for eval_set in run.eval_sets.values():
        run.evaluate.lower(state.params, archs, eval_set).compile()
