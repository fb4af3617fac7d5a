"""Data layer: datasets, federated partitions and on-device augmentation.

``load_dataset(data_config, seed)`` returns a :class:`Dataset`;
``make_partition`` splits its training labels across clients and
``client_index_table`` packs the split for the device; ``augment_batch`` and
``normalize`` prepare images on device.
"""
from superfed_jax.data.augment import augment_batch, normalize
from superfed_jax.data.dataset import Dataset, holdout_validation, to_unit_float
from superfed_jax.data.load import DATASET_NAMES, load_dataset
from superfed_jax.data.partition import (
    PARTITION_METHODS,
    client_index_table,
    dirichlet_partition,
    iid_partition,
    make_partition,
    natural_partition,
    shards_partition,
)

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "PARTITION_METHODS",
    "augment_batch",
    "client_index_table",
    "dirichlet_partition",
    "holdout_validation",
    "iid_partition",
    "load_dataset",
    "make_partition",
    "natural_partition",
    "normalize",
    "shards_partition",
    "to_unit_float",
]
