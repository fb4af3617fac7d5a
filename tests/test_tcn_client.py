"""The elastic TCN in the federated client code (`federated/client.py`, `federated/objective.py`): token
windows through a vmapped chunk of local schedules, the sliced execution against the masked one."""
import jax
import ml_collections
import numpy as np
import pytest

from superfed_jax.federated import client
from superfed_jax.federated import client_optimizer
from superfed_jax.federated import objective
from superfed_jax.supernet import family as family_lib
from superfed_jax.supernet.tcn.family import ElasticTCN, TCNSpace


# Every client optimiser option at once (docs/algorithm.md 5.1): they must keep masked == sliced.
OPTIONS = ml_collections.ConfigDict(dict(learning_rate=0.5, clip_norm=1.0, optimizer="sgd", momentum=0.9,
                                         nesterov=True, weight_decay=0.05, prox_mu=0.5))


@pytest.mark.parametrize("options", [False, True])
def test_a_vmapped_chunk_of_clients_trains_the_same_sliced_and_masked(options):
    """The federated client code end to end on token windows: two clients' local schedules (dropout on)
    as one vmapped chunk with the chunk's envelope, against the masked execution; with every client
    optimiser option too, where the subnet mask comes from the raw arch of the `(arch, envelope)` pair."""
    family = ElasticTCN(TCNSpace(channels=4, levels=2, kernel_size=2, depth_choices=(0, 1),
                                 expand_choices=(0.5, 1.0), input_shape=(5,), num_classes=7))
    params = family.init(jax.random.key(2))
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, 7, (8, 5)).astype(np.int32)
    targets = rng.integers(0, 7, (8, 5)).astype(np.int32)
    indices = np.array([np.arange(4), np.arange(4, 8)], np.int32)
    sizes = np.array([4, 3], np.int32)
    archs = family_lib.stack([family.arch_from_json({"d": 0, "e": 0.5}),
                              family.arch_from_json({"d": 1, "e": [1.0, 0.5]})])
    keys = jax.random.split(jax.random.key(4), 2)

    def train(execution):
        optimizer, subnet_mask = client.make_optimizer(0.5, 1.0), None
        if options:
            optimizer = client_optimizer.make_client_optimizer(OPTIONS)
            subnet_mask = family.masks if execution == "masked" else lambda pair: family.masks(pair[0])
        form = (client.ParamsForm(family.sliced.to_pieces, family.sliced.from_pieces) if execution == "sliced"
                else client.IDENTITY_FORM)
        update = client.make_client_update(objective.make_loss_fn(family, None, None, None, execution),
                                           optimizer, epochs=1, batch_size=2, max_size=4, params_form=form,
                                           subnet_mask=subnet_mask)
        envelope = family.sliced.envelope if execution == "sliced" else None
        return jax.jit(client.vmap_clients(update, envelope))(params, archs, indices, sizes, keys, tokens, targets)

    masked, cut = train("masked"), train("sliced")
    np.testing.assert_allclose(cut.loss, masked.loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(cut.params), jax.tree.leaves(masked.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Client 0 keeps one block of width 2: its second block and the rest of its first are untouched.
    np.testing.assert_array_equal(cut.params["block_1"]["conv1"]["v"][0], params["block_1"]["conv1"]["v"])
    np.testing.assert_array_equal(cut.params["block_0"]["conv1"]["v"][0, 2:], params["block_0"]["conv1"]["v"][2:])
    assert not np.array_equal(cut.params["block_0"]["conv1"]["v"][0, :2], params["block_0"]["conv1"]["v"][:2])
