"""SuperFed on federated Shakespeare: next-character prediction with the elastic TCN, one client per role.

    python launch.py --config=configs/shakespeare.py --config.data.path=PATH          # the reference's run
    python launch.py --config=configs/shakespeare.py:cpu --config.data.path=PATH      # minutes on 2 CPU cores
    python launch.py --config=shakespeare:smoke --config.data.path=PATH               # a seconds-long try
    python launch.py --config=shakespeare:cpu,fedavg=largest --config.data.path=PATH  # FedAvg of one arch

PATH is TensorFlow Federated's `shakespeare.tar.bz2` (what `tff.simulation.datasets.shakespeare.load_data()`
downloads into ~/.keras/datasets/, 1.8 MB) or a folder holding its shakespeare_train.h5 and
shakespeare_test.h5: 715 speaking roles, each a client (data.partition='natural'); TFF's recipe turns each
line into 81-token pieces of a 90-id character vocabulary, every non-padding position a target. LEAF's
Shakespeare JSON (the files of the reference's published runs, 80-symbol alphabet, the 81st character as
the only target) is read with --config.data.name=leaf_shakespeare --config.data.path=FOLDER and
--config.fl.num_clients set to its count of users (the error message says it). docs/text.md has the details.

The reference's settings (SuperFedNAS, Shakespeare MaxNet run): channels 450, 3 levels, kernel 3, depth
{0, 1, 2}, expand {0.2, 0.5, 1.0} (39 subnets), dropout 0.45 / embedding 0.25; SGD lr 4 with global-norm
clip 0.05, 5 local epochs of batches of 32 windows, 25 clients a round, 400 rounds, beta cosine from 0.9 to
1/25 over the first 80 rounds, aggregation weights times client size (fl.weight_by_size).
"""
from superfed_jax import config as config_lib


def cpu(config):
    """The task scaled to a 2-core CPU machine, a few minutes a run (docs/text.md, "Speed"): channels 128
    (0.31 of the reference's 3.7 MMACs per token), 8 clients a round, 2 local epochs, 150 rounds with the
    beta decay over the first 30. The optimiser is the reference's: with a clip of 0.25 or 1.0 in place of
    0.05, learning is faster at first but the second and third blocks die (their ReLUs stay off:
    99.9% of conv2 outputs zero after 60 rounds, measured), so depth stops mattering."""
    config.space.channels = 128
    config.fl.update(clients_per_round=8, rounds=150)
    config.client.epochs = 2
    config.eval.every_rounds = 15
    config.checkpoint.every_rounds = 15
    config.log_every_rounds = 15
    return config


def get_config(arg: str = ""):
    config = config_lib.base_config("tcn")
    config.space.update(channels=450, levels=3, kernel_size=3, depth_choices=(0, 1, 2),
                        expand_choices=(0.2, 0.5, 1.0), dropout=0.45, emb_dropout=0.25, input_shape=(80,),
                        num_classes=90)
    # Every role with a training window is a client (min_client_size 1): TFF's archive has 715. A tenth
    # of each client's windows (floor) is held out to choose the best round; every client keeps one.
    config.data.update(name="shakespeare", partition="natural", min_client_size=1, val_fraction=0.1)
    # beta_final -1 = 1/clients_per_round (the reference's 1/25); its decay lasts 80 of 400 rounds.
    config.fl.update(num_clients=715, clients_per_round=25, rounds=400, chunk_size=0, beta0=0.9,
                     beta_final=-1.0, decay_fraction=0.2, weight_by_size=True)
    config.client.update(epochs=5, batch_size=32, learning_rate=4.0, clip_norm=0.05)
    # The reference reports next-character accuracy for Shakespeare; perplexity is in metrics.jsonl too.
    config.eval.update(every_rounds=5, batch_size=500, metric="accuracy")
    config.checkpoint.every_rounds = 25
    config.log_every_rounds = 5
    return config_lib.apply_variant(config, arg, own={"cpu": cpu})
