"""superfed_jax: weight-shared federated learning (SuperFed) in JAX/Flax."""
import setuptools

setuptools.setup(
    name="superfed_jax",
    version="0.1.0",
    description="SuperFed weight-shared federated learning in JAX/Flax",
    packages=setuptools.find_packages(include=["superfed_jax", "superfed_jax.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax",
        "flax",
        "optax",
        "orbax-checkpoint",
        "tensorflow-datasets",
        "ml_collections",
        "numpy",
        "scikit-learn",
    ],
    extras_require={
        "cuda12": ["jax[cuda12]"],
        "tpu": ["jax[tpu]"],
        "test": ["pytest", "hypothesis", "pillow"],  # pillow: writing a real TFDS folder in a test
    },
)
