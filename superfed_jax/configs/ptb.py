"""SuperFed on word-level language modelling (Penn Treebank's layout) with the elastic TCN.

    python launch.py --config=configs/ptb.py --config.data.path=FOLDER          # the reference's run
    python launch.py --config=configs/ptb.py:cpu --config.data.path=FOLDER      # a short run on 2 CPU cores
    python launch.py --config=ptb:smoke --config.data.path=FOLDER               # a first try: 2 rounds, tiny space
    python launch.py --config=ptb:fedavg=largest --config.data.path=FOLDER      # FedAvg of one arch

FOLDER holds train.txt, valid.txt and test.txt with one sentence per line and whitespace-separated words,
as the Penn Treebank files of Mikolov et al. (the usual ptb.train.txt etc., renamed) are laid out; any
corpus so laid out works. `<eos>` ends every line; the vocabulary is the training file's (10,000 words
for PTB: data.max_vocab refuses a larger one), unknown words of the other files become `<unk>`. The
training stream is cut into windows of 80 tokens, 40 apart, the last 40 positions of each scored, and the
windows into 20 contiguous clients (data.partition='contiguous'), as the reference splits the stream.
Perplexity (exp of the mean loss per scored token) is what the reference reports; docs/text.md.

The reference's settings (SuperFedNAS, PTB MaxNet run): channels 600, 4 levels, kernel 3, depth {0, 1, 2},
expand {0.1, 0.2, 0.25, 0.5, 1.0} (775 subnets), dropout 0.45 / embedding 0.25, tied decoder; SGD lr 4
with global-norm clip 0.35, 5 local epochs of batches of 16 windows, 8 of 20 clients a round, 200 rounds,
beta cosine from 0.9 to 1/8 over the first 80 rounds.
"""
from superfed_jax import config as config_lib


def cpu(config):
    """A short run for a 2-core CPU machine (docs/text.md): channels 128, 1 local epoch, 4 clients a round,
    20 rounds; the 10,000-word decoder still dominates each step."""
    config.space.channels = 128
    config.fl.update(clients_per_round=4, rounds=20)
    config.client.epochs = 1
    config.eval.every_rounds = 5
    config.checkpoint.every_rounds = 5
    return config


def get_config(arg: str = ""):
    config = config_lib.base_config("tcn")
    config.space.update(channels=600, levels=4, kernel_size=3, depth_choices=(0, 1, 2),
                        expand_choices=(0.1, 0.2, 0.25, 0.5, 1.0), dropout=0.45, emb_dropout=0.25,
                        input_shape=(80,), num_classes=10000)
    # valid.txt is the validation split, so nothing is held out of the training stream.
    config.data.update(name="ptb", partition="contiguous", val_fraction=0.0, seq_len=80, scored_len=40,
                       max_vocab=10000)
    config.fl.update(num_clients=20, clients_per_round=8, rounds=200, chunk_size=0, beta0=0.9,
                     beta_final=-1.0, decay_fraction=0.4, weight_by_size=False)
    config.client.update(epochs=5, batch_size=16, learning_rate=4.0, clip_norm=0.35)
    config.eval.update(every_rounds=5, batch_size=25)  # logits of 25 x 80 x 10,000 per tracked arch
    config.checkpoint.every_rounds = 25
    config.log_every_rounds = 5
    return config_lib.apply_variant(config, arg, own={"cpu": cpu})
