"""The federated training set placed on the devices: partitioned over clients, rows split over devices."""
import numpy as np

from superfed_jax.data import partition as partition_lib
from superfed_jax.federated import round as federated_round
from superfed_jax.federated import sharding


def place_federated_data(dataset, config, mesh) -> federated_round.FederatedData:
    """Partitions the training set over clients and places it on the devices.

    The image and label rows are split over the devices (padded to a multiple of their number; padding
    rows are never indexed), so each device and process holds only its share; the small per-client
    index table is replicated.

    Args:
      dataset: a `data.Dataset` (x_train, y_train are the rows partitioned; client_train names their
        clients for data.partition='natural').
      config: the experiment config (reads seed, fl.num_clients and the data section's partition fields).
      mesh: the device mesh of `sharding.make_mesh`.
    """
    parts = partition_lib.make_partition(
        dataset.y_train, config.fl.num_clients, config.data.partition, config.seed,
        alpha=config.data.alpha, shards_per_client=config.data.shards_per_client,
        min_size=config.data.min_client_size, client_ids=dataset.client_train)
    table, sizes = partition_lib.client_index_table(parts)
    pad = -len(dataset.y_train) % mesh.devices.size
    images = np.concatenate([dataset.x_train, np.zeros((pad,) + dataset.x_train.shape[1:],
                                                       dataset.x_train.dtype)])
    labels = np.concatenate([dataset.y_train, np.zeros((pad,) + dataset.y_train.shape[1:],
                                                      dataset.y_train.dtype)]).astype(np.int32)
    rows, small = sharding.data_sharded(mesh), sharding.replicated(mesh)
    return federated_round.FederatedData(
        images=sharding.put_global(images, rows), labels=sharding.put_global(labels, rows),
        index_table=sharding.put_global(table, small), sizes=sharding.put_global(sizes, small))
