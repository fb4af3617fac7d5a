"""Client local training (docs/algorithm.md section 5), written for one client and vmapped over clients.

SGD (optax; momentum, weight decay and FedProx's proximal term as options, `client_optimizer.py`), a
fresh optimizer each round, global-norm clipping before every step, `epochs` passes over the client's
own examples in shuffled batches with the last partial batch used, cross-entropy averaged over the
batch's real examples.

Clients of different sizes run in one program. Every epoch's batch order is drawn over a static row of
ceil(max_client_size / batch_size) batches with the real examples first, so a client of n examples fills
ceil(n / batch_size) batches; the rest of the row is padding. A client runs only its own real steps,
`client_steps(n)` = epochs * ceil(n / batch_size), in a loop with a dynamic trip count: vmapped, the loop
runs to the chunk's largest count and leaves finished clients untouched (their padding steps are
computed and discarded); side by side, it runs to the chunk's largest count and a finished client skips
its further steps (a `lax.cond` per client), so only real steps are computed. A padded example has loss
weight 0 and a step with no real example leaves params untouched (`jnp.where`), so padding changes
nothing: not the params, not the clipping norm, not the loss.

An optimizer that reads the client's subnet (masked weight decay, the proximal term, a user's rule) gets
it, and the params the client started from, as the extra args `subnet` and `anchor` of every update
(`make_client_update`'s `subnet_mask`); both are computed once per client, before its step loop.
"""
import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

# How a chunk of clients runs (`fl.client_layout`): "vmap" as a batch axis, "side_by_side" as independent
# subgraphs of one program (`make_side_by_side_update`), "auto" = side by side on one CPU device, else vmap.
CLIENT_LAYOUTS = ("auto", "vmap", "side_by_side")


class ClientResult(NamedTuple):
    """What one client returns: trained params and the mean loss over the scored positions it saw (its
    real examples, for images)."""

    params: dict
    loss: jax.Array  # float32 scalar; NaN-free for a client with at least one example


def make_optimizer(learning_rate: float, clip_norm: float) -> optax.GradientTransformation:
    """Global-norm clipping then plain SGD. Masked weights have zero gradient, so the norm is the subnet's.

    The default of `client_optimizer.make_client_optimizer`, which builds this same chain when no option
    is set."""
    return optax.chain(optax.clip_by_global_norm(clip_norm), optax.sgd(learning_rate))


def epoch_order(key: jax.Array, size: jax.Array, max_size: int, num_batches: int, batch_size: int):
    """int32 [num_batches, batch_size] positions into the client's index row for one epoch.

    Real positions (< size) come first in a random order, then padding positions (>= size). Each
    position's random score depends only on (key, position), so the order of the real examples does not
    depend on how much padding the row has.
    """
    positions = jnp.arange(max_size)
    scores = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(positions)
    scores = jnp.where(positions < size, scores, 2.0)  # padding sorts last
    order = jnp.argsort(scores).astype(jnp.int32)
    order = jnp.pad(order, (0, num_batches * batch_size - max_size), constant_values=max_size)
    return order.reshape(num_batches, batch_size)


def scored_weights(labels: jax.Array, weights: jax.Array) -> jax.Array:
    """Per-position weights shaped like `labels`: each example's weight on every position, 0 where the
    label is negative (a position that is not scored: padding of a text window, or its context part).

    Labels may have more axes than `weights` (token windows: labels [B, T], weights [B]); each example's
    weight then applies to all of its positions.
    """
    weights = jnp.reshape(weights, jnp.shape(weights) + (1,) * (jnp.ndim(labels) - jnp.ndim(weights)))
    return jnp.where(labels >= 0, weights, 0.0)


def cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
    """Sum of per-position cross-entropy times `scored_weights` (0 for padding and unscored positions)."""
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
    return jnp.sum(losses * scored_weights(labels, weights))


def make_train_step(loss_fn: Callable, optimizer: optax.GradientTransformation) -> Callable:
    """Builds `train_step(params, opt_state, arch, images, labels, weights, key, opt_args=None) -> (params,
    opt_state, loss)`.

    One optimizer step on one batch; `loss` is the mean over the batch's scored positions
    (`scored_weights`: the real examples of an image batch; the real, scored targets of token windows). A
    batch with nothing scored leaves params and optimizer state untouched.

    Args:
      loss_fn: `loss_fn(params, arch, images, labels, weights, key) -> summed weighted loss`; it applies the
        (masked) model to a batch and is responsible for augmentation with `key`.
      optimizer: an optax transformation. `opt_args`, a dict, are extra keyword args of its `update`
        (`subnet`, `anchor`: see `make_client_update`); None or {} calls it as a plain transformation.
    """
    # Extra args reach only the transforms that take them (a plain one, e.g. the default chain's, ignores
    # them); for an ExtraArgs transformation, e.g. any optax.chain, this is the transformation itself.
    optimizer = optax.with_extra_args_support(optimizer)

    def train_step(params, opt_state, arch, images, labels, weights, key, opt_args=None):
        real = jnp.sum(scored_weights(labels, weights))
        mean_loss = lambda p: loss_fn(p, arch, images, labels, weights, key) / jnp.maximum(real, 1.0)  # noqa: E731
        loss, grads = jax.value_and_grad(mean_loss)(params)
        updates, new_opt_state = optimizer.update(grads, opt_state, params, **(opt_args or {}))
        new_params = optax.apply_updates(params, updates)
        params, opt_state = jax.tree.map(lambda new, old: jnp.where(real > 0, new, old),
                                         (new_params, new_opt_state), (params, opt_state))
        return params, opt_state, loss

    return train_step


def steps_per_epoch(max_size: int, batch_size: int) -> int:
    """Static steps of every client's epoch: enough batches for the largest client."""
    return -(-max_size // batch_size)


def client_schedule(key: jax.Array, size: jax.Array, *, epochs: int, max_size: int, batch_size: int):
    """Batch positions [epochs * steps, batch_size] and augmentation keys [epochs * steps] of one client.

    Keys per (epoch, batch) by fold_in, so real steps see the same randomness whatever the padding.
    """
    num_batches = steps_per_epoch(max_size, batch_size)
    epoch_keys = jax.vmap(lambda e: jax.random.fold_in(key, e))(jnp.arange(epochs))
    orders = jax.vmap(lambda k: epoch_order(jax.random.fold_in(k, 0), size, max_size, num_batches,
                                            batch_size))(epoch_keys)
    keys = jax.vmap(lambda k: jax.vmap(lambda b: jax.random.fold_in(jax.random.fold_in(k, 1), b))(
        jnp.arange(num_batches)))(epoch_keys)
    return orders.reshape(epochs * num_batches, batch_size), keys.reshape(epochs * num_batches)


def client_steps(size, *, epochs: int, batch_size: int):
    """Real local steps of a client of `size` examples: epochs * ceil(size / batch_size) (int or array)."""
    return epochs * (-(-size // batch_size))


def real_step(orders: jax.Array, keys: jax.Array, size: jax.Array, step: jax.Array, *, epochs: int,
              max_size: int, batch_size: int):
    """Batch positions [batch_size] and key of a client's `step`-th real step (0-based).

    `orders`, `keys` are its `client_schedule`; step i is batch i % b of epoch i // b with b = ceil(size /
    batch_size) real batches per epoch. Steps at or past `client_steps(size)` get padding positions only
    (a no-op step), so a loop may run a client past its own count, e.g. to its chunk's largest count.
    """
    num_batches = steps_per_epoch(max_size, batch_size)
    real_batches = jnp.maximum(-(-size // batch_size), 1)
    epoch = jnp.minimum(step // real_batches, epochs - 1)
    flat = epoch * num_batches + step % real_batches
    is_real = step < client_steps(size, epochs=epochs, batch_size=batch_size)
    return jnp.where(is_real, orders[flat], max_size), keys[flat]


class ParamsForm(NamedTuple):
    """How a client holds the params while it trains, when not in the supernet's full shape.

    `split(params)` runs before the client's first local step (its optimizer state is built on the split
    form), `join(local)` after its last, giving back full-shape params for aggregation. A family's sliced
    execution (`Family.sliced`) trains its own pieces of the params (its `to_pieces`, `from_pieces`).
    """

    split: Callable
    join: Callable


IDENTITY_FORM = ParamsForm(split=lambda params: params, join=lambda params: params)


def training_mask(masks, params, form: ParamsForm):
    """The subnet mask `masks` (a tree like the full-shape `params`, leaves broadcastable to theirs) in the
    form the client trains: `params`' dtypes, 1 inside the subnet and 0 outside. For the full-shape form
    the leaves keep their broadcastable shapes; another form (pieces) splits the mask as it splits the
    params, so it is broadcast to the full shapes first."""
    if form is IDENTITY_FORM:
        return jax.tree.map(lambda m, p: jnp.asarray(m, p.dtype), masks, params)
    return form.split(jax.tree.map(lambda m, p: jnp.broadcast_to(jnp.asarray(m, p.dtype), p.shape), masks,
                                   params))


def optimizer_args(subnet_mask: Optional[Callable], arch, params, local, form: ParamsForm) -> dict:
    """The extra args of a client's optimizer updates: none without `subnet_mask`, else `subnet` (its
    `training_mask`, of `subnet_mask(arch)`) and `anchor` (`local`: the params it starts from, in the
    training form). Computed once per client, outside its step loop."""
    if subnet_mask is None:
        return {}
    return {"subnet": training_mask(subnet_mask(arch), params, form), "anchor": local}


class _Carry(NamedTuple):
    """One client's state across its local steps."""

    params: dict
    opt_state: optax.OptState
    loss_sum: jax.Array  # sum over steps of (step loss * scored positions in the step)
    count: jax.Array  # scored positions seen (real examples, for images)


def _initial_carry(params, optimizer) -> _Carry:
    return _Carry(params, optimizer.init(params), jnp.float32(0.0), jnp.float32(0.0))


def _local_step(train_step, carry: _Carry, positions, key, arch, indices, size, images, labels,
                max_size: int, opt_args=None) -> _Carry:
    """One step of one client on the batch at `positions` of its index row (>= size: padding)."""
    weights = (positions < size).astype(jnp.float32)
    rows = indices[jnp.minimum(positions, max_size - 1)]
    params, opt_state, loss = train_step(carry.params, carry.opt_state, arch, images[rows], labels[rows],
                                         weights, key, opt_args)
    real = jnp.sum(scored_weights(labels[rows], weights))
    return _Carry(params, opt_state, carry.loss_sum + loss * real, carry.count + real)


def _result(carry: _Carry, form: ParamsForm) -> ClientResult:
    return ClientResult(params=form.join(carry.params), loss=carry.loss_sum / jnp.maximum(carry.count, 1.0))


def _step_loop(step_fn: Callable, init, num_steps: jax.Array, max_steps: int, unroll: int):
    """`step_fn(carry, step) -> carry` for step = 0 .. num_steps - 1, a dynamic count up to `max_steps`.

    `unroll` > 1 runs that many steps per loop iteration (steps past `num_steps` must be no-ops, as padding
    steps are: `real_step`); 0 unrolls all `max_steps` statically (no dynamic count, as a full unroll must).
    Under `vmap` with a per-client `num_steps`, the loop runs to the batch's largest count and keeps the
    carry of clients that are done.
    """
    if unroll <= 0:
        return jax.lax.fori_loop(0, max_steps, lambda i, c: step_fn(c, i), init, unroll=True)

    def body(state):
        i, carry = state
        for offset in range(unroll):
            carry = step_fn(carry, i + offset)
        return i + unroll, carry

    _, final = jax.lax.while_loop(lambda state: state[0] < num_steps, body, (jnp.int32(0), init))
    return final


def make_client_update(loss_fn: Callable, optimizer: optax.GradientTransformation, *, epochs: int,
                       batch_size: int, max_size: int, unroll: int = 1,
                       params_form: ParamsForm = IDENTITY_FORM,
                       subnet_mask: Optional[Callable] = None) -> Callable:
    """Builds `client_update(params, arch, indices, size, key, images, labels) -> ClientResult`.

    Args:
      loss_fn, optimizer: as for `make_train_step`; the optimizer state is fresh for every call (a new
        optimizer every round).
      epochs, batch_size: local training schedule.
      max_size: the padded length of a client's index row (static).
      unroll: local steps per loop iteration (0 = the whole padded schedule, fully unrolled). XLA:CPU
        runs convolution gradients slowly inside loop bodies (docs/performance.md 3), so unrolling short
        local schedules trades compile time for speed there.
      params_form: the form the client trains its params in (`ParamsForm`); the full shape by default.
      subnet_mask: `subnet_mask(arch) -> masks`, for an optimizer that reads the client's subnet: `arch` as
        `loss_fn` receives it (with sliced execution the pair `(arch, envelope)`), masks a tree like the
        full-shape params, 1 inside the subnet, broadcastable to the params (e.g. `Family.masks`). Each
        update then gets `subnet` (in the training form, `training_mask`) and `anchor` (the params the
        client started from, in the training form) as extra args. None (default): no extra args.

    The returned function trains one client: `indices` int32 [max_size] are its rows in the device-resident
    `images` [N, H, W, C] / `labels` [N]; `size` is how many of them are real. It runs `client_steps(size)`
    steps (vmapped: the batch's largest count, leaving finished clients untouched).
    """
    train_step = make_train_step(loss_fn, optimizer)
    sched = dict(epochs=epochs, max_size=max_size, batch_size=batch_size)
    max_steps = epochs * steps_per_epoch(max_size, batch_size)

    def client_update(params, arch, indices, size, key, images, labels):
        orders, keys = client_schedule(key, size, **sched)
        local = params_form.split(params)
        opt_args = optimizer_args(subnet_mask, arch, params, local, params_form)

        def step(carry, i):
            positions, step_key = real_step(orders, keys, size, i, **sched)
            return _local_step(train_step, carry, positions, step_key, arch, indices, size, images,
                               labels, max_size, opt_args)

        final = _step_loop(step, _initial_carry(local, optimizer),
                           client_steps(size, epochs=epochs, batch_size=batch_size), max_steps, unroll)
        return _result(final, params_form)

    return client_update


def vmap_clients(client_update: Callable, chunk_envelope: Optional[Callable] = None) -> Callable:
    """Trains a chunk of clients as one batch axis: `(params, archs[C], indices[C], sizes[C], keys[C],
    images, labels) -> ClientResult[C]`. The layout for accelerators and multi-device meshes.

    With `chunk_envelope(archs[C]) -> envelope` (sliced execution, `Family.sliced.envelope`), the envelope
    is computed once for the chunk, outside the vmap, and every client's `loss_fn` receives the pair
    `(arch, envelope)` as its arch, the envelope unbatched: a batched branch index would turn the model's
    `lax.switch`/`lax.cond` into selects that run every branch.
    """
    if chunk_envelope is None:
        return jax.vmap(client_update, in_axes=(None, 0, 0, 0, 0, None, None))
    per_client = jax.vmap(client_update, in_axes=(None, (0, None), 0, 0, 0, None, None))

    def train_chunk(params, archs, indices, sizes, keys, images, labels):
        return per_client(params, (archs, chunk_envelope(archs)), indices, sizes, keys, images, labels)

    return train_chunk


def make_side_by_side_update(loss_fn: Callable, optimizer: optax.GradientTransformation, *, epochs: int,
                             batch_size: int, max_size: int, unroll: int = 1,
                             chunk_envelope: Optional[Callable] = None,
                             params_form: ParamsForm = IDENTITY_FORM,
                             subnet_mask: Optional[Callable] = None) -> Callable:
    """Like `vmap_clients(make_client_update(...))`, but a chunk's clients are independent subgraphs.

    One `lax.scan` over local steps whose body trains every client of the chunk (a Python loop at trace
    time) instead of a batch axis. On XLA:CPU this avoids batched/grouped convolutions and lets the executor
    run the clients on different cores at once (benchmarks/RESULTS.md); it needs the chunk on one device.
    Each client computes only its own steps: once done, its `lax.cond` skips the step (under `vmap` the
    same cond would become a select that computes both sides). Results are the same as the vmapped layout's. With `chunk_envelope` (as for `vmap_clients`) each
    client is its own group: its `loss_fn` receives `(arch, envelope of that arch alone)`. `params_form`
    and `subnet_mask` (which receives the arch as `loss_fn` does) as for `make_client_update`.
    """
    train_step = make_train_step(loss_fn, optimizer)

    sched = dict(epochs=epochs, max_size=max_size, batch_size=batch_size)
    max_steps = epochs * steps_per_epoch(max_size, batch_size)

    def clients_update(params, archs, indices, sizes, keys, images, labels):
        num = sizes.shape[0]
        orders, step_keys = jax.vmap(lambda k, n: client_schedule(k, n, **sched))(keys, sizes)
        client_archs = [jax.tree.map(lambda a: a[c], archs) for c in range(num)]
        if chunk_envelope is not None:  # computed once, before the loop over local steps
            client_archs = [(arch, chunk_envelope(jax.tree.map(lambda a: a[None], arch)))
                            for arch in client_archs]

        own_steps = client_steps(sizes, epochs=epochs, batch_size=batch_size)
        local = params_form.split(params)  # one split: every client starts from the same params
        opt_args = [optimizer_args(subnet_mask, arch, params, local, params_form) for arch in client_archs]

        def step(carry, i):
            def one(c):
                positions, step_key = real_step(orders[c], step_keys[c], sizes[c], i, **sched)
                train = functools.partial(_local_step, train_step, positions=positions, key=step_key,
                                          arch=client_archs[c], indices=indices[c], size=sizes[c],
                                          images=images, labels=labels, max_size=max_size,
                                          opt_args=opt_args[c])
                # Each client is its own subgraph, so a client whose steps are done skips the step's
                # computation (a padding step changes nothing): the chunk costs its clients' real steps.
                return jax.lax.cond(i < own_steps[c], train, lambda carry_: carry_, carry[c])
            return tuple(one(c) for c in range(num))

        # The chunk's own largest count; a client that is done skips the remaining iterations.
        chunk_steps = jnp.max(own_steps)
        init = tuple(_initial_carry(local, optimizer) for _ in range(num))
        final = _step_loop(step, init, chunk_steps, max_steps, unroll)
        return jax.tree.map(lambda *xs: jnp.stack(xs), *[_result(c, params_form) for c in final])

    return clients_update
