"""A tiny search space, synthetic data and NumPy references shared by test_client.py and test_round.py.

Everything is small enough that one local client schedule or one federated round compiles in seconds on
the 2-core CPU machine. The references here are written without the library's training, mask or
aggregation code, so the tests compare the library against something independent.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from superfed_jax.data import partition
from superfed_jax.supernet.ofa_resnet import model as model_lib
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet.family import OFAResNet

SPACE = space_lib.SearchSpace(stem_width=4, stage_widths=(8, 16), stage_strides=(1, 2),
                              blocks_per_stage=2, expand_choices=(0.25, 0.5, 0.75, 1.0), divisor=1,
                              input_size=4, input_channels=1, num_classes=3)
# The project default. With "xla" convolutions, client-sharded rounds are wrong on XLA:CPU (see
# test_round.py::test_client_sharded_forward_matches_unsharded), so rounds are tested with im2col.
CONV_IMPL = "im2col"
NUM_EXAMPLES = 100
# Uneven client sizes (sum 100): 16 and 24 fill whole batches of 8, the others end with a partial batch,
# and 3 is smaller than one batch.
CLIENT_SIZES = (3, 5, 8, 11, 13, 16, 20, 24)
NUM_CLIENTS = len(CLIENT_SIZES)
MEAN = np.array([0.45], np.float32)
STD = np.array([0.25], np.float32)

MODEL = model_lib.Supernet(SPACE, CONV_IMPL)
FAMILY = OFAResNet(SPACE, CONV_IMPL)  # the same supernet, as the layers above supernet/ take it


def make_data(seed: int = 0):
    """uint8 images [N, 4, 4, 1] and int32 labels [N] that depend (noisily) on the image, so SGD learns."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (NUM_EXAMPLES, 4, 4, 1), dtype=np.uint8)
    brightness = images.reshape(NUM_EXAMPLES, -1).mean(axis=1)
    labels = np.digitize(brightness, np.quantile(brightness, [1 / 3, 2 / 3])).astype(np.int32)
    flip = rng.random(NUM_EXAMPLES) < 0.2
    labels = np.where(flip, rng.integers(0, 3, NUM_EXAMPLES), labels).astype(np.int32)
    return images, labels


def make_parts(seed: int = 0):
    """Hand-made client index lists: a random permutation of the examples cut at CLIENT_SIZES."""
    order = np.random.default_rng(seed + 1).permutation(NUM_EXAMPLES)
    return np.split(order, np.cumsum(CLIENT_SIZES)[:-1])


def index_table(seed: int = 0):
    return partition.client_index_table(make_parts(seed))


@functools.lru_cache(maxsize=None)
def init_params(seed: int = 0):
    """Supernet params as NumPy (host) arrays, so that every caller gets its own device buffers.

    Shapes come from `eval_shape` of the model's init (no compile); values are PyTorch-style uniform
    draws from NumPy, which is all these tests need and saves compiling `model.init_params`.
    """
    images = jax.ShapeDtypeStruct((1, SPACE.input_size, SPACE.input_size, SPACE.input_channels),
                                  jnp.float32)
    shapes = jax.eval_shape(lambda x: MODEL.init(jax.random.key(0), x, space_lib.largest(SPACE))["params"],
                            images)
    rng = np.random.default_rng(seed)

    def draw(shape):
        fan_in = int(np.prod(shape.shape[:-1])) if len(shape.shape) > 1 else SPACE.stage_widths[-1]
        bound = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape.shape).astype(np.float32)

    return jax.tree.map(draw, shapes)


def arch(depth, expand) -> space_lib.Arch:
    return space_lib.Arch(depth=np.asarray(depth, np.int32), expand=np.asarray(expand, np.int32))


# A middle-sized arch: stage 0 keeps both blocks (mids 6 and 2), stage 1 keeps one (mid 8).
MEDIUM = arch([1, 0], [2, 0, 1, 3])


def normalize(images):
    """(images / 255 - mean) / std in float32, written here rather than taken from the library."""
    return (np.asarray(images, np.float32) / 255.0 - MEAN) / STD


# ------------------------------------------------------------------------------------- NumPy references


def np_active(depth) -> np.ndarray:
    """bool [stages, blocks]: block b of stage s is kept iff b <= depth[s]."""
    return np.arange(SPACE.blocks_per_stage)[None, :] <= np.asarray(depth)[:, None]


def np_full_masks(depth, expand) -> dict:
    """Full-shape 0/1 float32 masks of one arch, built by hand from docs/algorithm.md 2.2."""
    params = init_params()
    masks = jax.tree.map(lambda p: np.ones(p.shape, np.float32), params)
    active = np_active(depth)
    expand = np.asarray(expand).reshape(SPACE.num_stages, SPACE.blocks_per_stage)
    for s, width in enumerate(SPACE.stage_widths):
        for b in range(SPACE.blocks_per_stage):
            block = masks[f"stage{s}_block{b}"]
            if not active[s, b]:
                for leaf in jax.tree.leaves(block):
                    leaf[...] = 0.0
                continue
            mid = space_lib.make_divisible(width * SPACE.expand_choices[expand[s, b]], SPACE.divisor)
            block["conv1"]["kernel"][..., mid:] = 0.0
            block["conv2"]["kernel"][:, :, mid:, :] = 0.0
    return masks


def np_is_largest(depth, expand) -> bool:
    return bool(np.all(np.asarray(depth) == SPACE.blocks_per_stage - 1)
                and np.all(np.asarray(expand) == SPACE.num_expand_choices - 1))


def np_is_smallest(depth, expand) -> bool:
    """Smallest subnet: depth 0 everywhere and expand index 0 on every *kept* block."""
    active = np_active(depth).reshape(-1)
    return bool(np.all(np.asarray(depth) == 0) and np.all(np.asarray(expand)[active] == 0))


def np_masked_mean(client_params, client_masks, weights, previous):
    """Per-element weighted mean over clients where masks are 1, previous elsewhere (docs/algorithm.md 4).

    client_params / client_masks: lists (one per client) of full-shape pytrees.
    """
    weights = np.asarray(weights, np.float64)

    def leaf(prev, *pairs):
        thetas, masks = pairs[:len(weights)], pairs[len(weights):]
        num = sum(w * m.astype(np.float64) * t.astype(np.float64)
                  for w, m, t in zip(weights, masks, thetas))
        den = sum(w * m.astype(np.float64) for w, m in zip(weights, masks))
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), prev)
        return out.astype(np.float32)

    return jax.tree.map(leaf, previous, *client_params, *client_masks)


def assert_trees_close(actual, expected, rtol=1e-5, atol=1e-6):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(actual)[0], jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol,
                                   err_msg=jax.tree_util.keystr(path))


def trees_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def max_abs_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def as_jnp(tree):
    return jax.tree.map(jnp.asarray, tree)


def assert_equal(actual, expected, err_msg=""):
    """Exact equality of two arrays or two pytrees of arrays (e.g. a round's batch of archs)."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected), err_msg
    for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(a, b, err_msg=err_msg)
