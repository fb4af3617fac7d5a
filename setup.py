"""A shim for tools that still look for setup.py; the package's metadata lives only in pyproject.toml
(tests/test_packaging.py checks that this file adds none of its own)."""
from setuptools import setup

setup()
