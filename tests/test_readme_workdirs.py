"""The README's training commands, run in its order in a fresh directory, each in its own default workdir.

The `python launch.py` lines of the README's "Running" block are run as written (those that need CIFAR
data, which this machine has not, are left out), from a temporary directory holding copies of
`launch.py` and `configs/` as a fresh clone would, with `my_data.npz` made from the digits. To stay
cheap every command gets the same overrides appended (one round of 2 of 4 clients on `:smoke`'s tiny
space), which change no workdir name: the test checks that each run lands in its own default workdir
(`workdir.default_workdir`) and none resumes, or is refused by, an earlier one (as `make run` followed by
`python launch.py --config=configs/digits.py:smoke` was, both in workdirs/digits).
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "## Running"
# `:smoke` as overrides (superfed_jax/config.py: apply_variant), one round: the README's commands cheap.
SHRINK = ["--config.fl.rounds=1", "--config.fl.decay_fraction=1.0", "--config.fl.num_clients=4",
          "--config.fl.clients_per_round=2", "--config.client.epochs=1", "--config.eval.every_rounds=1",
          "--config.eval.batch_size=50", "--config.checkpoint.every_rounds=1", "--config.space.stem_width=4",
          "--config.space.stage_widths=(32,64)", "--config.space.stage_strides=(1,2)",
          "--config.space.blocks_per_stage=2", "--config.space.divisor=1"]


def readme_training_commands() -> list[list[str]]:
    """The `python launch.py ...` lines of the README's Running block, without their comments."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    block = re.search(r"```bash\n(.*?)```", text[text.index(SECTION):], re.DOTALL).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines()
            if line.startswith("python launch.py")]


def test_readme_lists_the_commands_this_test_runs():
    commands = readme_training_commands()
    assert ["python", "launch.py"] in commands  # `make run`
    assert any("--config=configs/digits.py:smoke" in c for c in commands)
    assert any("--config.data.path=my_data.npz" in c for c in commands)


def test_readme_commands_in_order_each_get_their_own_default_workdir(tmp_path):
    shutil.copy(os.path.join(REPO, "launch.py"), tmp_path / "launch.py")
    shutil.copytree(os.path.join(REPO, "superfed_jax", "configs"), tmp_path / "configs")
    from sklearn import datasets
    digits = datasets.load_digits()
    images, labels = (digits.images * 16).astype(np.uint8), digits.target
    np.savez(tmp_path / "my_data.npz", x_train=images[:1400], y_train=labels[:1400],
             x_test=images[1400:], y_test=labels[1400:])
    # CIFAR needs its data (an archive or a TFDS dir): those lines are checked by tests/test_launch.py.
    commands = [c for c in readme_training_commands()
                if not any("cifar" in arg or arg == "..." for arg in c)]
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    env.pop("XLA_FLAGS", None)
    workdirs = []
    for command in commands:
        result = subprocess.run([sys.executable, *command[1:], *SHRINK], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=400)
        assert result.returncode == 0, (command, result.stderr[-3000:])
        [workdir] = re.findall(r"^workdir: (.*)$", result.stdout, re.MULTILINE)
        assert "resuming" not in result.stderr, (command, result.stderr[-2000:])  # a fresh run each
        workdirs.append(workdir)
    assert workdirs == ["workdirs/digits", "workdirs/npz_my_data", "workdirs/digits_smoke"]
    for workdir in workdirs:  # every run finished its own round in its own directory
        with open(tmp_path / workdir / "metrics.jsonl") as f:
            assert [json.loads(line)["round"] for line in f] == [1]
    with open(tmp_path / "workdirs" / "npz_my_data" / "config.json") as f:
        assert json.load(f)["data"]["path"] == "my_data.npz"
