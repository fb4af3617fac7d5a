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
        "matplotlib",  # report.py: accuracy-vs-MACs plots (Agg, headless)
        "tensorboardX",  # tb_writer.py: TensorBoard scalars without TensorFlow
    ],
    extras_require={
        "cuda12": ["jax[cuda12]"],
        "tpu": ["jax[tpu]"],
        # pillow: writing a real TFDS folder in a test; tensorboard: reading event files back.
        "test": ["pytest", "hypothesis", "pillow", "tensorboard"],
    },
)
