"""Loads a text dataset with the text readers and prints its counts, clients, vocabulary and load time.

    python benchmarks/text_data.py PATH [--kind=auto|tff|leaf|word] [--repeat=3]

PATH is TFF's shakespeare.tar.bz2 (or the folder of its two h5 files), a LEAF Shakespeare folder
(train/ and test/ of JSON files) or a Penn Treebank-style folder (train.txt, valid.txt, test.txt);
--kind=auto tells them apart by what the folder holds. Each load is timed on its own (after the imports);
the best and every time are printed. For TFF's archive the window counts are compared with those
recorded for TFF's recipe (37,784 train and 5,490 test sequences, 715 clients). The last line of output
is one JSON object with every figure.
"""
import argparse
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from superfed_jax.data.text import (load_leaf_shakespeare, load_tff_shakespeare,  # noqa: E402
                                    load_word_text)

# TFF's recipe on TFF's archive, as recorded in the reference notes and the data README.
TFF_EXPECTED = {"train_windows": 37784, "test_windows": 5490, "clients": 715}


def detect(path: str) -> str:
    if os.path.isdir(os.path.join(path, "train")):
        return "leaf"
    if os.path.isfile(os.path.join(path, "train.txt")):
        return "word"
    return "tff"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path")
    parser.add_argument("--kind", choices=("auto", "tff", "leaf", "word"), default="auto")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    kind = detect(args.path) if args.kind == "auto" else args.kind
    load = {"tff": load_tff_shakespeare, "leaf": load_leaf_shakespeare, "word": load_word_text}[kind]
    times = []
    for _ in range(max(1, args.repeat)):
        start = time.perf_counter()
        data = load(args.path)
        times.append(time.perf_counter() - start)

    def scored(y):
        return None if y is None else int(np.count_nonzero(y >= 0))

    figures = {
        "path": os.path.abspath(args.path), "kind": kind,
        "train_windows": int(data.x_train.shape[0]), "test_windows": int(data.x_test.shape[0]),
        "val_windows": None if data.x_val is None else int(data.x_val.shape[0]),
        "seq_len": int(data.x_train.shape[1]),
        "train_scored_targets": scored(data.y_train), "test_scored_targets": scored(data.y_test),
        "val_scored_targets": scored(data.y_val),
        "train_windows_without_target": int(np.count_nonzero((data.y_train < 0).all(axis=1))),
        "test_windows_without_target": int(np.count_nonzero((data.y_test < 0).all(axis=1))),
        "vocab_size": len(data.vocab),
        "clients": None if data.client_names is None else len(data.client_names),
        "load_seconds_best": round(min(times), 3), "load_seconds": [round(t, 3) for t in times],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or '?'}, "
                   f"Python {platform.python_version()}, NumPy {np.__version__}",
        "notes": list(data.notes),
    }
    if data.client_train is not None:
        per_client = np.bincount(data.client_train)
        figures["windows_per_client"] = {"min": int(per_client.min()),
                                         "median": float(np.median(per_client)),
                                         "max": int(per_client.max())}
    if kind == "tff":
        figures["tff_expected"] = TFF_EXPECTED
        figures["tff_matches"] = all(figures[k] == v for k, v in TFF_EXPECTED.items())
    for key, value in figures.items():
        if key != "notes":
            print(f"{key}: {value}")
    for note in data.notes:
        print(f"note: {note}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
