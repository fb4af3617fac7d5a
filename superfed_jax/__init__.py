"""superfed_jax: SuperFed weight-shared federated learning (Khare et al., arXiv 2301.10879) in JAX/Flax."""
