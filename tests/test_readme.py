"""The README's aggregation example runs and prints what the README says it prints.

Every `print(...)  # OUTPUT` line of the Python block in "Masked aggregation in your own JAX project"
states its output after the `#`; the block is run as written and its printed lines are compared with
those comments, in order. The expected values are also worked out here by hand from the example's inputs
(weights 0.75 / 0.25, clients sending 1s and 3s, previous -1), so a README edited into a different but
self-consistent example still has to show masking at work.
"""
import contextlib
import io
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "## Masked aggregation in your own JAX project"


def aggregation_block() -> str:
    """The first ```python block after the section's heading."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    section = text[text.index(SECTION):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def stated_outputs(block: str) -> list[str]:
    """The comment of every print line: what the README says that line prints."""
    return [line.split("#", 1)[1].strip() for line in block.splitlines()
            if line.startswith("print(") and "#" in line]


def test_aggregation_example_prints_what_the_readme_says():
    block = aggregation_block()
    stated = stated_outputs(block)
    assert len(stated) == 3
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md (aggregation example)", "exec"), {})
    assert [line.strip() for line in out.getvalue().splitlines()] == stated


def test_the_example_shows_masked_and_unmasked_positions_differ():
    # By hand: columns 0-1 both clients (0.75 * 1 + 0.25 * 3) / (0.75 + 0.25) = 1.5, column 2 client 1
    # alone (0.25 * 3 / 0.25 = 3), column 3 no client: the previous value -1.
    stated = stated_outputs(aggregation_block())
    first_row = [float(v) for v in stated[0].strip("[]").split()]
    assert first_row == [1.5, 1.5, 3.0, -1.0]
    assert len(set(first_row)) == 3  # a masked-out column differs from a trained one
    assert stated[2] == stated[0]  # masked_sums + finalize give the same result
