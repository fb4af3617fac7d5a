"""The shipped experiment configs (`digits.py`, the default; `cifar10.py`; `cifar100.py`; `custom.py`,
for your own .npz data).

They are loaded as files by `--config=PATH` or `--config=NAME` (ml_collections; `_cli.resolve_config`),
not imported; this file only makes the folder a package so that it is installed with `superfed_jax` and
an installed `superfed-train` finds its default config. The repository's top-level `configs` is a link
to this folder.
"""
