"""After training: loading a trained run, evolutionary subnet search under budgets, latency measurement,
export of a dense subnet and evaluation of an export.
"""
