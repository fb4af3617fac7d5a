"""The server's step from the clients' masked mean (docs/algorithm.md 4.2)."""

# `server.optimizer` values; a user's own rule is an import path 'package.module:function'.
SERVER_OPTIMIZERS = ("none", "sgd", "adam", "yogi", "adagrad")
