"""Text datasets as token windows for next-token prediction (NumPy only; h5py for TFF's archive).

* :func:`load_tff_shakespeare`: TFF's federated Shakespeare (``shakespeare.tar.bz2``), 715 roles;
* :func:`load_leaf_shakespeare`: LEAF's Shakespeare JSON (the data of the SuperFed paper's runs);
* :func:`load_word_text`: a word-level corpus in Penn Treebank's text layout;
* :func:`stream_windows`: windows over one token stream, every target scored once.

Each returns a :class:`TokenData`.
"""
from superfed_jax.data.text.leaf_shakespeare import load_leaf_shakespeare
from superfed_jax.data.text.tff_shakespeare import load_tff_shakespeare
from superfed_jax.data.text.tokens import TokenData, stream_windows
from superfed_jax.data.text.word_text import load_word_text

__all__ = ["TokenData", "load_leaf_shakespeare", "load_tff_shakespeare", "load_word_text",
           "stream_windows"]
