"""The family interface (`supernet/family.py`): the OFA-ResNet keeps the contract, and `model.family`
names are resolved with clear errors."""
import jax
import numpy as np
import pytest

import family_contract
from superfed_jax.supernet import family as family_lib
from superfed_jax.supernet.ofa_resnet import family as ofa_family
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet.family import OFAResNet

SPACE = space_lib.SearchSpace(stem_width=4, stage_widths=(8, 16), stage_strides=(1, 2), blocks_per_stage=2,
                              expand_choices=(0.25, 0.5, 1.0), divisor=1, input_size=6, input_channels=2,
                              num_classes=3)


def _batch(family, count=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = family.data_shape
    inputs = rng.standard_normal((count,) + shape.input_shape).astype(np.float32)
    labels = rng.integers(0, shape.num_classes, count).astype(np.int32)
    return inputs, labels, np.ones(count, np.float32)


def test_ofa_resnet_keeps_the_family_contract():
    family = OFAResNet(SPACE, "xla")
    params = family.init(jax.random.key(0))
    family_contract.check_family(family, params, *_batch(family))


def test_ofa_resnet_sampling_is_unchanged_by_the_interface():
    family = OFAResNet(SPACE)
    key = jax.random.key(3)
    for a, b in zip(jax.tree.leaves(family.sample(key, (4,))),
                    jax.tree.leaves(space_lib.sample(SPACE, key, (4,)))):
        np.testing.assert_array_equal(a, b)


def test_genes_are_the_depths_then_the_expand_indices():
    family = OFAResNet(SPACE)
    arch = space_lib.Arch(depth=np.array([1, 0], np.int32), expand=np.array([2, 0, 1, 1], np.int32))
    np.testing.assert_array_equal(family_lib.to_genes(family, arch), [1, 0, 2, 0, 1, 1])
    np.testing.assert_array_equal(family_lib.gene_bounds(family), [2, 2, 3, 3, 3, 3])


def test_data_shape_replaces_the_space_input_and_classes():
    family = OFAResNet.from_config(OFAResNet(SPACE).space_dict(),
                                   data=family_lib.DataShape((10, 10, 1), 7))
    assert family.data_shape == family_lib.DataShape((10, 10, 1), 7)
    with pytest.raises(ValueError, match=r"square images \[H, W, C\].*\(10, 12, 1\)"):
        OFAResNet.from_config(OFAResNet(SPACE).space_dict(), data=family_lib.DataShape((10, 12, 1), 7))
    with pytest.raises(ValueError, match="config.space: .*stage_width"):
        OFAResNet.from_config({"stage_width": (8,)})


def test_family_class_resolves_names_and_import_paths():
    assert family_lib.family_class("ofa_resnet") is OFAResNet
    assert family_lib.family_class("superfed_jax.supernet.ofa_resnet.family:OFAResNet") is OFAResNet
    with pytest.raises(ValueError, match=r"model.family='resnet': not a registered family; allowed are "
                                         r"\['ofa_resnet', 'tcn'\] or an import path"):
        family_lib.family_class("resnet")
    with pytest.raises(ValueError, match="cannot import 'no_such_package_xyz.mod' \\(No module named"):
        family_lib.family_class("no_such_package_xyz.mod:Fam")
    with pytest.raises(ValueError, match="has no 'Missing'"):
        family_lib.family_class("superfed_jax.supernet.ofa_resnet.family:Missing")
    with pytest.raises(ValueError, match="is not a subclass of superfed_jax.supernet.family.Family"):
        family_lib.family_class("superfed_jax.supernet.ofa_resnet.family:SPACE_FIELDS")
    assert ofa_family.SPACE_FIELDS[0].name == "space.stem_width"


def test_dense_init_default_is_the_cut_out_supernet_init():
    """The base class's `dense_init` (for families without their own) equals the OFA-ResNet's own
    dense model in structure and shapes."""
    family = OFAResNet(SPACE)
    inputs = _batch(family)[0]
    for arch in (family.smallest(), family.largest()):
        own = jax.eval_shape(lambda x: family.dense_init(jax.random.key(0), x, arch), inputs)
        default = jax.eval_shape(lambda x: family_lib.Family.dense_init(family, jax.random.key(0), x, arch),
                                 inputs)
        assert jax.tree.map(lambda a: (a.shape, a.dtype), own) == jax.tree.map(lambda a: (a.shape, a.dtype),
                                                                              default)
    assert family.dense_description(family.smallest()) == {"subnet_shape": {"depth": [0, 0],
                                                                             "mids": [2, 2, 4, 4]}}
