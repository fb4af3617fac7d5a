"""SuperFed on CIFAR-10 with the paper's settings (docs/algorithm.md; Khare et al., arXiv 2301.10879).

    python launch.py --config=configs/cifar10.py --config.data.archive=/data/cifar-10-binary.tar.gz
    python launch.py --config=configs/cifar10.py --config.data.tfds_data_dir=/data/tfds
    python launch.py --config=configs/cifar10.py:fedavg=largest ...   # FedAvg of one arch, same settings
    python launch.py --config=configs/cifar10.py:smoke ...   # a first try: 2 rounds, tiny space

K 20 clients, P 8 per round, 1500 rounds, 5 local epochs, batch 64, SGD lr 0.1, clip 1.0, tracking
sandwich, cosine beta 0.9 -> 1/P over 80% of the rounds, Dirichlet alpha 100, evaluation every 50 rounds.
"""
from superfed_jax import config as config_lib


def get_config(arg: str = ""):
    config = config_lib.base_config()  # the base config *is* the paper's CIFAR-10 setting
    config.data.name = "cifar10"
    config.log_every_rounds = 10
    config.model.conv_impl = "xla"  # cuDNN / TPU convolutions; 'im2col' is the CPU choice (benchmarks/RESULTS.md)
    return config_lib.apply_variant(config, arg)
