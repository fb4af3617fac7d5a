"""Federated training of the supernet: client sampling, subnet heuristics, beta schedules, local SGD,
the compiled round (train, aggregate), multi-arch evaluation and device placement.

Builds on `superfed_jax.supernet`, `superfed_jax.aggregation` and `superfed_jax.data`.
"""
