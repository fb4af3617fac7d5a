#!/usr/bin/env bash
# The one command to run when a GPU or TPU is lent: the benchmark suite at accelerator sizes (the
# CIFAR-shaped round with xla and im2col convolutions in float32 and bfloat16, masked and sliced; the
# elastic TCN in both dtypes; the digits round against a Python loop), inside 8 minutes, every figure in
# OUTDIR (summary.md, results.json, parts/). The work is done by benchmarks/accelerator.py; its docstring
# and benchmarks/RESULTS.md ("When an accelerator is lent") say what each part measures and how to record it.
#
#   bash benchmarks/accelerator.sh OUTDIR                 # on the lent machine
#   bash benchmarks/accelerator.sh --tiny OUTDIR          # the same code at tiny sizes on a CPU (CI)
#   bash benchmarks/accelerator.sh --wheels=DIR OUTDIR    # install missing modules' wheels first
#   bash benchmarks/accelerator.sh --parts=tcn_float32,digits_xla_float32 OUTDIR   # some parts only
#
# PYTHON picks the interpreter (default python3): the one whose JAX sees the accelerator.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "error: PYTHON=$python: no such interpreter on PATH; set PYTHON to the Python whose JAX sees the device" >&2
    exit 2
fi
exec "$python" "$here/accelerator.py" "$@"
