"""docs/families.md's Python example runs from the repository root and prints what the doc says.

Each `print(...)  # OUTPUT` line of the doc's ```python block states its output; the block is run as
written and every printed line is compared with its comment, in order.
"""
import contextlib
import io
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_families_doc_example_prints_what_it_says(monkeypatch):
    with open(os.path.join(REPO, "docs", "families.md")) as f:
        block = re.search(r"```python\n(.*?)```", f.read(), re.DOTALL).group(1)
    stated = [line.split("#", 1)[1].strip() for line in block.splitlines()
              if line.startswith("print(") and "#" in line]
    assert len(stated) >= 2  # the example states its outputs
    monkeypatch.chdir(REPO)
    monkeypatch.syspath_prepend(REPO)  # `examples` is importable from the repository root, as the doc says
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block, "docs/families.md", "exec"), {"__name__": "families_doc"})
    assert printed.getvalue().strip().splitlines() == stated
    assert "examples.elastic_mlp" in sys.modules
