"""One SuperFed round as one compiled program: `round_fn(state, data) -> (state, metrics)`.

Khare et al., arXiv 2301.10879, sections 3-4. Inside one `jax.jit`: sample P of K clients, hand each a
subnet (the distribution heuristic), derive its mask, gather its batches from the device-resident training
set, train all sampled clients together (`vmap`, optionally in chunks of a `lax.scan` so memory stays
bounded), and aggregate with the mask-weighted mean (weights: the beta schedule, times each client's data
size with `weight_by_size`). Clients are split over the `clients` mesh axis; the supernet params are
replicated. Nothing is copied to the host inside a round.

Chunks group similar clients: before the round is cut into chunks, its clients are ordered by local steps
(data size), then by arch MACs (`chunk_order`), so each chunk's envelope (most steps, widest arch) is
tight; a chunk runs only its own largest step count (client.py).

All randomness is derived from (seed, round, client id), so a resumed run replays exactly and results do
not depend on how clients are ordered, chunked or sharded (up to float summation order:
docs/performance.md 15).
"""
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from superfed_jax import aggregation
from superfed_jax.federated import client as client_lib
from superfed_jax.federated import heuristics
from superfed_jax.federated import private_aggregation
from superfed_jax.federated import sampling
from superfed_jax.federated import schedules
from superfed_jax.federated import server_optimizer
from superfed_jax.federated import sharding
from superfed_jax.supernet import family as family_lib

# Stream ids for `fold_in(round_key, stream)`: independent randomness for each purpose.
_SAMPLE_STREAM, _ASSIGN_STREAM, _TRAIN_STREAM, _NOISE_STREAM = 0, 1, 2, 3


@flax.struct.dataclass
class ServerState:
    """Everything a round reads and writes; checkpointing this is enough to resume exactly."""

    params: Any  # supernet params (replicated)
    round: jax.Array  # int32 scalar: rounds completed so far
    rng: jax.Array  # uint32 key data of the run's root key; never advanced, rounds fold in their index
    tracking: heuristics.TrackingState  # tracking-sandwich counters per client
    # The server optimiser's state (`server_optimizer`); `()`, no leaves, when the server takes the mean.
    server_opt: Any = ()


@flax.struct.dataclass
class FederatedData:
    """The whole federated training set on device (every client's rows) plus a padded per-client index table.

    Client k owns rows `index_table[k, :sizes[k]]` of `images` and `labels`.
    """

    images: jax.Array  # the inputs [N, ...]: images [N, H, W, C] uint8 or float32, or token windows
    labels: jax.Array  # int32 [N, ...]
    index_table: jax.Array  # int32 [K, max_client_size]: each client's rows of images, left-aligned
    sizes: jax.Array  # int32 [K]: real entries of each row


class RoundSettings(NamedTuple):
    """Static settings of the round (Python values bound into the compiled program)."""

    num_clients: int
    clients_per_round: int
    chunk_size: int  # clients trained together in one vmap; divides clients_per_round
    heuristic: str
    pool: Any  # a batch of archs (leading axis L, `family.stack`), or None
    count_random_extremes: bool
    beta_schedule: str
    beta0: float
    beta_final: float
    decay_rounds: int
    # The clients' local batch size; only orders clients into chunks by local steps, ceil(size / batch).
    batch_size: int = 1
    # fl.weight_by_size: each client's aggregation weight is also multiplied by its training examples.
    weight_by_size: bool = False
    # dp.clip_norm (0 = no differential privacy) and dp.noise_multiplier (private_aggregation.py).
    dp_clip_norm: float = 0.0
    dp_noise_multiplier: float = 0.0
    # fl.smallest_clients: how many sampled clients the sandwich heuristics give the smallest arch.
    smallest_clients: int = 1


def init_state(params, seed: int, num_clients: int, server_opt=None) -> ServerState:
    """The state before round 0 (every leaf its own buffer, so the whole state can be donated).

    `server_opt`: the server's optax transformation (`server_optimizer.make_server_optimizer`), or None.
    """
    state = ServerState(params=params, round=jnp.int32(0),
                       rng=jax.random.key_data(jax.random.key(seed)),
                       tracking=heuristics.init_tracking(num_clients),
                       server_opt=server_optimizer.init_state(server_opt, params))
    return jax.tree.map(jnp.array, state)


def round_key(state: ServerState) -> jax.Array:
    """The key of the state's current round: fold_in(root key, round)."""
    return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.round)


def client_train_keys(key_of_round: jax.Array, clients: jax.Array) -> jax.Array:
    """Per-client training keys: depend only on (seed, round, client id), never on position or chunking."""
    train_key = jax.random.fold_in(key_of_round, _TRAIN_STREAM)
    return jax.vmap(lambda c: jax.random.fold_in(train_key, c))(clients)


def assign_round(family: family_lib.Family, settings: RoundSettings, state: ServerState):
    """Clients and subnets of the state's current round: `(clients [P], archs [P], is_maxnet [P], tracking)`.

    Depends only on (seed, round, tracking counters), never on data or weights, so `dry_run` replays a
    whole run's assignment sequence with this same function.
    """
    key = round_key(state)
    clients = sampling.sample_clients(jax.random.fold_in(key, _SAMPLE_STREAM), settings.num_clients,
                                      settings.clients_per_round)
    archs, is_maxnet, tracking = heuristics.assign_archs(
        settings.heuristic, family, jax.random.fold_in(key, _ASSIGN_STREAM), state.round, clients,
        state.tracking, settings.pool, count_random_extremes=settings.count_random_extremes,
        smallest_clients=settings.smallest_clients)
    return clients, archs, is_maxnet, tracking


def chunk_order(family: family_lib.Family, archs: Any, sizes: jax.Array, batch_size: int) -> jax.Array:
    """int32 [P]: positions of a round's clients, fewest local steps first, ties by arch MACs, then position.

    Cutting this order into chunks puts clients of similar cost together, so a chunk's envelope is tight:
    its largest step count (every client of a chunk runs that many loop iterations) and its widest arch.
    Steps come first because under Dirichlet skew they vary most (docs/performance.md 15).
    """
    steps = -(-sizes // batch_size)
    return jnp.lexsort((family.macs_array(archs), steps)).astype(jnp.int32)


def aggregation_weights(settings: RoundSettings, beta_t: jax.Array, is_maxnet: jax.Array,
                        sizes: jax.Array, clients: jax.Array) -> jax.Array:
    """float32 [P]: the aggregation weight of each sampled client, before renormalisation.

    The beta weights of docs/algorithm.md 4.1 (`schedules.client_weights`); with `settings.weight_by_size`
    (the reference's --weight_dataset) each is multiplied by the client's number of training examples,
    `sizes[clients]` (`sizes`: int32 [K], `FederatedData.sizes`; `clients`: int32 [P]). The aggregation
    divides by the masked weight sum per element, so the weights need no normalisation here. Without the
    flag nothing of `sizes` is read: the round is the same program as before the flag existed.
    """
    weights = schedules.client_weights(settings.beta_schedule, beta_t, is_maxnet)
    if settings.weight_by_size:
        weights = weights * sizes[clients].astype(jnp.float32)
    return weights


def _finite_tree(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _finite_clients(result: client_lib.ClientResult) -> jax.Array:
    """bool [C]: clients whose trained params and loss are all finite."""
    return jax.vmap(_finite_tree)(result.params) & jnp.isfinite(result.loss)


def _drop_nonfinite(client_params, weights: jax.Array, finite: jax.Array):
    """Gives clients that are not `finite` weight 0 and zero params (0 * NaN would poison sums)."""
    params = jax.tree.map(
        lambda x: jnp.where(finite.reshape((-1,) + (1,) * (x.ndim - 1)), x, 0), client_params)
    return params, jnp.where(finite, weights, 0.0)


def _zero_sums(family: family_lib.Family, params):
    """Zeros shaped like `aggregation.masked_sums` output (numerator per param, denominator per mask)."""
    one_client = (jax.tree.map(lambda p: p[None], params),
                  jax.tree.map(lambda m: m[None], family.masks(family.largest())),
                  jnp.ones((1,), jnp.float32))
    shapes = jax.eval_shape(aggregation.masked_sums, *one_client)
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _new_params(settings: RoundSettings, server_opt, state: ServerState, numerator, denominator, key):
    """`(params, server optimiser state)` after the round, from the summed contributions.

    Without privacy the sums are of the clients' params and their masked mean is `aggregation.finalize`
    (the paper's rule, bit for bit with server.optimizer='none'); with it they are of clipped updates, and
    noise is added to the numerator before the division. A server optimiser then steps on the mean.
    """
    if settings.dp_clip_norm > 0:
        if settings.dp_noise_multiplier > 0:
            numerator = private_aggregation.add_noise(
                numerator, key, settings.dp_noise_multiplier * settings.dp_clip_norm)
        zeros = jax.tree.map(jnp.zeros_like, state.params)
        mean_update = aggregation.finalize(numerator, denominator, zeros)  # 0 where nobody trained
        mean = jax.tree.map(lambda p, u: (p + u).astype(p.dtype), state.params, mean_update)
    else:
        mean = aggregation.finalize(numerator, denominator, state.params)
    if server_opt is None:
        return mean, state.server_opt
    covered = jax.tree.map(lambda d: d > 0, denominator)
    return server_optimizer.server_step(server_opt, state.params, state.server_opt, mean, covered)


def make_round_fn(family: family_lib.Family, settings: RoundSettings, train_clients: Callable,
                  mesh, client_sum: str = "", server_opt=None) -> Callable:
    """Builds the pure round function; wrap it in `jax.jit(..., donate_argnums=0)`.

    Args:
      family: the supernet family (static).
      settings: static round settings.
      train_clients: trains one chunk of clients, `(params, archs[C], indices[C], sizes[C], keys[C],
        images, labels) -> ClientResult[C]`: `client.vmap_clients(client.make_client_update(...))` or
        `client.make_side_by_side_update(...)`.
      mesh: the device mesh (clients are split over its `clients` axis).
      client_sum: `aggregation.masked_sums`'s form; "" picks it from the mesh (`aggregation.client_sum_for`:
        slices on one CPU device, one reduction per leaf when clients are sharded).
      server_opt: the server's optax transformation (`server_optimizer.make_server_optimizer`), or None to
        take the clients' masked mean (the paper). Its state is `ServerState.server_opt`.
    """
    num_chunks = settings.clients_per_round // settings.chunk_size
    client_sum = client_sum or aggregation.client_sum_for(mesh.devices.size, mesh.devices.flat[0].platform)
    private = settings.dp_clip_norm > 0

    def train_and_sum(params, data: FederatedData, chunk):
        archs, clients, weights, keys = sharding.constrain_clients(chunk, mesh)
        result = train_clients(params, archs, data.index_table[clients], data.sizes[clients], keys,
                               data.images, data.labels)
        finite = _finite_clients(result)
        client_masks = jax.vmap(family.masks)(archs)
        if private:  # clipped updates; a non-finite client contributes zero but keeps its weight
            client_values, clipped = private_aggregation.clip_updates(result.params, params, client_masks,
                                                                      settings.dp_clip_norm)
        else:
            client_values, weights = _drop_nonfinite(result.params, weights, finite)
            clipped = jnp.zeros_like(finite)
        sums = aggregation.masked_sums(client_values, client_masks, weights, client_sum)
        return sums, (jnp.where(finite, result.loss, 0.0), finite, clipped)

    def round_fn(state: ServerState, data: FederatedData):
        clients, archs, is_maxnet, tracking = assign_round(family, settings, state)
        beta = schedules.beta(settings.beta_schedule, state.round, beta0=settings.beta0,
                              beta_final=settings.beta_final, decay_rounds=settings.decay_rounds)
        weights = aggregation_weights(settings, beta, is_maxnet, data.sizes, clients)
        if private:  # the largest weight 1: every client's contribution has norm <= dp.clip_norm
            weights = private_aggregation.dp_weights(weights)
        keys = client_train_keys(round_key(state), clients)

        per_client = (archs, clients, weights, keys)
        if num_chunks > 1:  # one chunk: its envelope is the round's whatever the order
            order = chunk_order(family, archs, data.sizes[clients], settings.batch_size)
            per_client = jax.tree.map(lambda x: x[order], per_client)
        chunks = jax.tree.map(lambda x: x.reshape((num_chunks, settings.chunk_size) + x.shape[1:]),
                              per_client)
        zero_sums = _zero_sums(family, state.params)

        def chunk_step(sums, chunk):
            chunk_sums, outputs = train_and_sum(state.params, data, chunk)
            return jax.tree.map(jnp.add, sums, chunk_sums), outputs

        (numerator, denominator), (losses, finite, clipped) = jax.lax.scan(chunk_step, zero_sums, chunks)
        params, server_opt_state = _new_params(settings, server_opt, state, numerator, denominator,
                                               jax.random.fold_in(round_key(state), _NOISE_STREAM))
        losses, finite = losses.reshape(-1), finite.reshape(-1)
        metrics = {
            "train_loss": jnp.sum(losses) / jnp.maximum(jnp.sum(finite), 1),
            "beta": beta,
            "clients_nonfinite": jnp.sum(~finite),
            "clients": clients,
            "archs": archs,  # the family's arch pytree, leading axis [P] (in sampled order)
        }
        if private:
            metrics["dp_clipped"] = jnp.sum(clipped)  # clients whose update the clip norm scaled down
        new_state = state.replace(params=params, round=state.round + 1, tracking=tracking,
                                  server_opt=server_opt_state)
        return new_state, metrics

    return round_fn
