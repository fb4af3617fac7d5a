"""The client's local optimiser (docs/algorithm.md 5.1)."""

# `client.optimizer` values; a user's own rule is an import path 'package.module:function'.
CLIENT_OPTIMIZERS = ("sgd",)
