"""SuperFed on your own images, from one .npz file named on the command line.

    python launch.py --config=configs/custom.py --config.data.path=/data/my_data.npz
    python launch.py --config=custom:smoke --config.data.path=/data/my_data.npz     # a seconds-long try
    python launch.py --config=custom:fedavg=largest --config.data.path=/data/my_data.npz   # FedAvg baseline

The file holds x_train, y_train, x_test, y_test (images NHWC or NHW, uint8 or float; integer labels) and
optionally client_id (one id per training example, for --config.data.partition=natural); the input shape
and the class count are inferred from it. The run's default workdir is workdirs/npz_<file name>
(workdirs/npz_my_data for the first line, npz_my_data_smoke for the second). Everything else is the base
config (the paper's space and training settings, docs/algorithm.md): shrink it for small images or short
runs with --config.X overrides (e.g. --config.fl.rounds=200 --config.space.stage_widths='(32,64,128,256)').
"""
from superfed_jax import config as config_lib


def get_config(arg: str = ""):
    config = config_lib.base_config()
    # data.path is left '' on purpose: the run stops at once asking for --config.data.path.
    config.data.name = "npz"
    # No mirroring by default: it changes the meaning of many image kinds (text, digits, maps, scans);
    # give --config.data.flip=True where a mirrored image is still the same class.
    config.data.flip = False
    # Cutout's 16-pixel square is sized for 32x32 CIFAR and would blank smaller images; off by default.
    config.data.cutout_size = 0
    config.log_every_rounds = 10
    return config_lib.apply_variant(config, arg)
