"""The embedded default: SuperFed on scikit-learn's bundled 8x8 handwritten digits (no download).

    python launch.py                       # this config
    python launch.py --config=configs/digits.py:fedavg=largest   # FedAvg of one tracked arch
    python launch.py --config=configs/digits.py:smoke            # a first try, about a minute (also :smoke,fedavg=ARCH)

A scaled-down space (8x8x1 inputs, three narrow stages of two blocks, divisor 1 so the five expand ratios stay distinct
subnets) that trains to a useful result in a few minutes on 2 CPU cores.
"""
from superfed_jax import config as config_lib


def get_config(arg: str = ""):
    config = config_lib.base_config()
    # Three stages of two blocks suit 8x8 inputs (spatial 8, 4, 2) and train quickly without normalization.
    config.space.update(stem_width=16, stage_widths=(32, 64, 128), stage_strides=(1, 2, 2),
                        blocks_per_stage=2, divisor=1, input_size=8, input_channels=1, num_classes=10)
    config.data.update(name="digits", crop_padding=1, flip=False, cutout_size=0)
    # Chunks of 2 clients side by side (client_layout 'auto' on one CPU) keep both cores busy.
    config.fl.update(num_clients=20, clients_per_round=8, rounds=150, chunk_size=2)
    # lr 0.5: the no-norm net with PyTorch init leaves its initial plateau far sooner than at the paper's 0.1.
    config.client.update(epochs=2, batch_size=32, learning_rate=0.5)
    config.eval.update(every_rounds=25)
    config.checkpoint.every_rounds = 25
    config.log_every_rounds = 5
    # Measured with evaluations every 5 rounds (2-core AMD EPYC, jax 0.10.2): validation accuracy stays at
    # 0.05-0.14 with loss 2.30-2.32 through round 45 (seed 0) / 35 (seed 1), first exceeds 0.15 at round
    # 50 / 40, and passes 0.5 for most tracked archs by round 55-65.
    config.note = ("the first ~40-50 rounds sit near chance (validation accuracy about 0.1, loss about "
                   "2.31 = ln 10): the net has no normalization layers and starts on a plateau it leaves "
                   "around round 40-50; accuracy passes 0.5 by about round 60. Expected, not a failure.")
    return config_lib.apply_variant(config, arg)
