"""SuperFed on CIFAR-100 with the paper's settings (docs/algorithm.md; Khare et al., arXiv 2301.10879).

    python launch.py --config=configs/cifar100.py --config.data.archive=/data/cifar-100-binary.tar.gz
    python launch.py --config=configs/cifar100.py:fedavg=smallest ...   # FedAvg of one arch
    python launch.py --config=configs/cifar100.py:smoke,fedavg=smallest ...   # the same, seconds long

As configs/cifar10.py, with 100 classes and 2000 rounds.
"""
from superfed_jax import config as config_lib


def get_config(arg: str = ""):
    config = config_lib.base_config()
    config.data.name = "cifar100"
    config.space.num_classes = 100
    config.fl.rounds = 2000
    config.log_every_rounds = 10
    config.model.conv_impl = "xla"  # cuDNN / TPU convolutions; 'im2col' is the CPU choice (benchmarks/RESULTS.md)
    return config_lib.apply_variant(config, arg)
