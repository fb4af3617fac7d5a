"""Entry point in the repository: `python launch.py [--config=configs/cifar10.py] [--workdir=DIR] [--config.a.b=value ...]`.

The same command as the installed `superfed-train`; everything lives in `superfed_jax.run.launch`
(default config: superfed_jax/configs/digits.py, which `configs/` links to).
"""
import sys

from superfed_jax.run import launch

if __name__ == "__main__":
    launch.main(sys.argv)
