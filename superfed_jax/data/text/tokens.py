"""Token-sequence datasets (next-token prediction) and windows over a token stream.

A text dataset is a set of fixed-length windows of token ids. ``x[i, t]`` is the input at position ``t``
of window ``i`` and ``y[i, t]`` the id the model should predict there; ``y == -1`` marks a position that
is not scored (padding, or context that an earlier window already scored). Losses and accuracies are
taken over the scored positions only.

:func:`stream_windows` cuts one long token stream (a word-level corpus such as Penn Treebank) into such
windows so that every token after the first is scored exactly once, each with at least
``seq_len - scored`` tokens of context (except in the first window, which has what the stream gives).
"""
from typing import NamedTuple, Optional, Tuple

import numpy as np

__all__ = ["IGNORE", "TokenData", "stream_windows"]

# The target id of a position that is not scored.
IGNORE = -1


class TokenData(NamedTuple):
    """A tokenised text dataset, as the text readers return it.

    Attributes:
      x_train: int32 [N, T] input ids of the training windows.
      y_train: int32 [N, T] target ids; -1 where the position is not scored.
      client_train: int64 [N], the client (0..K-1) that holds each training window, or None when the
        source has no natural clients (the caller then partitions the windows itself).
      x_val, y_val: the validation windows, or None when the source has no validation split.
      x_test, y_test: the test windows (int32 [M, T]), pooled over all clients.
      vocab: the token of each id (``vocab[i]`` is id i); its length is the model's vocabulary size.
      client_names: the name of client k at position k, or None without natural clients.
      notes: lines to show the user (for example clients that were dropped).
    """
    x_train: np.ndarray
    y_train: np.ndarray
    client_train: Optional[np.ndarray]
    x_val: Optional[np.ndarray]
    y_val: Optional[np.ndarray]
    x_test: np.ndarray
    y_test: np.ndarray
    vocab: Tuple[str, ...]
    client_names: Optional[Tuple[str, ...]]
    notes: Tuple[str, ...]


def stream_windows(stream: np.ndarray, seq_len: int, scored: int) -> Tuple[np.ndarray, np.ndarray]:
    """Cuts a 1-D stream of token ids into windows in which every target is scored exactly once.

    With ``L = len(stream)``, the targets are ``stream[1:]`` (``L - 1`` of them):

    * window 0 starts at 0: inputs ``stream[0:seq_len]``, targets ``stream[1:seq_len+1]``, all scored;
    * window ``j > 0`` starts at ``s = j * scored``: inputs ``stream[s:s+seq_len]``, targets
      ``stream[s+1:s+seq_len+1]``, of which only the last ``scored`` positions are scored (the first
      ``seq_len - scored`` are context, target -1), while the window fits (``s + seq_len <= L - 1``);
    * if targets are left over after the last window that fits, one more window is placed so that it
      ends at the stream's end (``s = L - 1 - seq_len``) and scores only those targets, its last few
      positions;
    * a stream shorter than ``seq_len + 1`` (but with at least one target) gives a single window of the
      whole stream, right-padded: inputs with 0, targets with -1;
    * a stream of fewer than two tokens has no target and gives no window (arrays of shape [0, seq_len]).

    Example: a stream of 10 tokens, seq_len 4, scored 2 gives windows starting at 0, 2, 4 and 5; window
    0 scores the targets at stream positions 1-4, the window at 2 those at 5-6, the one at 4 those at
    7-8, and the final window (start 5) only the target at 9, in its last position.

    Args:
      stream: 1-D array of non-negative integer token ids.
      seq_len: window length T, >= 1.
      scored: positions scored per window after the first, 1 <= scored <= seq_len.

    Returns:
      (x, y), int32 arrays of shape [W, seq_len]; y holds -1 at positions that are not scored.

    Raises:
      ValueError: for a stream that is not a 1-D array of non-negative int32-range integers, or a bad
        seq_len or scored.
    """
    stream = np.asarray(stream)
    if stream.ndim != 1:
        raise ValueError(f"stream_windows: the stream must be 1-D, got shape {stream.shape}.")
    if stream.size and stream.dtype.kind not in "iu":
        raise ValueError(f"stream_windows: the stream must hold integer token ids, got dtype "
                         f"{stream.dtype}.")
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ValueError(f"stream_windows: seq_len must be an integer >= 1, got {seq_len!r}.")
    if (isinstance(scored, bool) or not isinstance(scored, (int, np.integer))
            or not 1 <= scored <= seq_len):
        raise ValueError(f"stream_windows: scored must be an integer from 1 to seq_len={seq_len}, "
                         f"got {scored!r}.")
    seq_len, scored = int(seq_len), int(scored)
    if stream.size and (stream.min() < 0 or stream.max() > np.iinfo(np.int32).max):
        raise ValueError(f"stream_windows: token ids must lie in 0..{np.iinfo(np.int32).max}, got "
                         f"{int(stream.min())}..{int(stream.max())}.")
    stream = stream.astype(np.int32, copy=False)
    length = stream.shape[0]
    if length < 2:
        empty = np.zeros((0, seq_len), np.int32)
        return empty, empty.copy()
    if length < seq_len + 1:
        x = np.zeros((1, seq_len), np.int32)
        y = np.full((1, seq_len), IGNORE, np.int32)
        x[0, :length] = stream
        y[0, :length - 1] = stream[1:]
        return x, y

    # Windows that fit: starts 0, scored, 2*scored, ... up to the last start s with s + seq_len <= L - 1.
    full = (length - 1 - seq_len) // scored + 1
    starts = np.arange(full, dtype=np.int64) * scored
    n_scored = np.full(full, scored, np.int64)
    n_scored[0] = seq_len
    last_target = (full - 1) * scored + seq_len  # stream index of the last target scored so far
    left = (length - 1) - last_target
    if left > 0:  # 0 < left < scored: one more window, ending at the stream's end
        starts = np.append(starts, length - 1 - seq_len)
        n_scored = np.append(n_scored, left)
    positions = starts[:, None] + np.arange(seq_len)[None, :]
    x = stream[positions]
    y = stream[positions + 1]
    context = np.arange(seq_len)[None, :] < (seq_len - n_scored)[:, None]
    y[context] = IGNORE
    return x, y
