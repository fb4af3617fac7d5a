"""Text runs end to end: the shipped Shakespeare and PTB configs train on tiny files made here.

`python launch.py --config=configs/shakespeare.py:smoke` on a 6-client TFF-layout folder of h5 files and
`--config=configs/ptb.py:smoke` on a folder of train/valid/test text files: each trains, writes perplexity
beside accuracy and loss for every tracked arch and split (perplexity = exp(loss) of the same record),
and reports by its headline metric (accuracy for Shakespeare, as the reference reports it; perplexity
for PTB). A Shakespeare run killed with SIGKILL after a checkpoint resumes bit-identically: dropout keys
follow (seed, round, client, step), so the replayed rounds draw the same masks.
"""
import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from test_launch import ROOT

h5py = pytest.importorskip("h5py")

WORDS = ("the king is dead long live the king . my lord , what news from france ? none good , sir . "
         "speak then , for the night is long and the day is far").split()


def _line(rng, length):
    return " ".join(rng.choice(WORDS, size=length))


def _tff_folder(root, clients=6, seed=0):
    """A TFF-layout folder: shakespeare_{train,test}.h5, `examples/<client>/snippets` byte strings."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    for split, lines in (("train", 4), ("test", 2)):
        with h5py.File(os.path.join(root, f"shakespeare_{split}.h5"), "w") as f:
            for c in range(clients):
                snippets = [_line(rng, int(rng.integers(8, 40))).encode() for _ in range(lines + c % 3)]
                f.create_dataset(f"examples/PLAY_ROLE_{c}/snippets", data=np.array(snippets, dtype="S"))
    return root


def _word_folder(root, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    for split, lines in (("train", 120), ("valid", 20), ("test", 20)):
        with open(os.path.join(root, f"{split}.txt"), "w") as f:
            f.writelines(f" {_line(rng, int(rng.integers(4, 15)))} \n" for _ in range(lines))
    return root


def _environment():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return env


def _command(workdir, config, *flags):
    return [sys.executable, "launch.py", f"--config={config}", *flags, f"--workdir={workdir}"]


def _launch(workdir, config, *flags):
    result = subprocess.run(_command(workdir, config, *flags), cwd=ROOT, env=_environment(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _digest(workdir, rounds):
    with open(os.path.join(workdir, "checkpoints", str(rounds), "host", "metadata")) as f:
        return json.load(f)["digest"]


def _check_perplexity(records, tracked):
    for record in records:
        for name in tracked:
            for split in ("val", "test"):
                loss = record[f"{name}/{split}_loss"]
                assert record[f"{name}/{split}_perplexity"] == pytest.approx(math.exp(loss), rel=1e-9)
                assert 0.0 <= record[f"{name}/{split}_accuracy"] <= 1.0


SHAKESPEARE = ["--config.fl.num_clients=6", "--config.fl.rounds=4", "--config.checkpoint.every_rounds=1"]


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory):
    """(data folder, workdir of an uninterrupted 4-round smoke run)."""
    data = _tff_folder(str(tmp_path_factory.mktemp("tff")))
    workdir = str(tmp_path_factory.mktemp("shakespeare_run"))
    result = _launch(workdir, "configs/shakespeare.py:smoke", f"--config.data.path={data}", *SHAKESPEARE)
    return data, workdir, result


def test_shakespeare_smoke_trains_on_natural_clients_and_reports_accuracy(shakespeare):
    _, workdir, result = shakespeare
    records = _metrics(workdir)
    assert [r["round"] for r in records] == [1, 2, 3, 4]
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    assert config["model"]["family"] == "tcn" and config["data"]["partition"] == "natural"
    tracked = [k.split("/")[0] for k in records[0] if k.endswith("/val_loss")]
    assert tracked[0] == "smallest" and tracked[-1] == "largest"
    _check_perplexity(records, tracked)
    assert all(np.isfinite(r["train_loss"]) for r in records)
    assert "val acc" in result.stdout  # Shakespeare's headline: next-character accuracy
    with open(os.path.join(workdir, "report.md")) as f:
        report = f.read()
    assert "accuracy" in report and "forward MACs per token" in report
    with open(os.path.join(workdir, "cost.json")) as f:
        cost = json.load(f)
    # Training MACs count every token of a window (n_c windows * 80 tokens * epochs * MACs per token).
    assert "windows of 80 tokens" in cost["conventions"]["example_macs"]
    example_macs = cost["superfed"]["total_example_macs"]
    assert example_macs % 80 == 0 and example_macs >= 80 * cost["superfed"]["total_macs"]
    assert cost["superfed"]["total_training_macs"] == 3 * example_macs


def test_shakespeare_resumes_bit_identically_after_sigkill(shakespeare, tmp_path):
    data, reference, _ = shakespeare
    process = subprocess.Popen(
        _command(str(tmp_path), "configs/shakespeare.py:smoke", f"--config.data.path={data}", *SHAKESPEARE),
        cwd=ROOT, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if line.startswith("round 2/"):  # checkpoints every round: at least round 1's is committed
            process.send_signal(signal.SIGKILL)
            break
    process.communicate(timeout=600)
    assert process.returncode == -signal.SIGKILL
    resumed = _launch(str(tmp_path), "configs/shakespeare.py:smoke", f"--config.data.path={data}", *SHAKESPEARE)
    assert "resuming" in resumed.stderr
    assert _digest(str(tmp_path), 4) == _digest(reference, 4)
    assert _metrics(str(tmp_path)) == _metrics(reference)


def test_ptb_smoke_trains_on_contiguous_clients_and_selects_by_perplexity(tmp_path):
    data = _word_folder(str(tmp_path / "words"))
    workdir = str(tmp_path / "run")
    result = _launch(workdir, "configs/ptb.py:smoke,fedavg=largest", f"--config.data.path={data}",
                     "--config.data.seq_len=16", "--config.data.scored_len=8")
    records = _metrics(workdir)
    _check_perplexity(records, ["largest"])
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    assert config["data"]["partition"] == "contiguous" and config["fl"]["heuristic"] == "static"
    with open(os.path.join(workdir, "report.md")) as f:
        report = f.read()
    assert "perplexity" in report
    best = min(records, key=lambda r: r["largest/val_perplexity"])
    assert f"{best['largest/test_perplexity']:.2f}" in report
    assert "perplexity" in result.stdout


@pytest.mark.parametrize("config", ["shakespeare", "ptb"])
def test_a_dry_run_of_a_text_config_needs_no_data(config, tmp_path):
    result = _launch(str(tmp_path), f"configs/{config}.py", "--config.dry_run=True")
    assert "forward per token" in result.stdout  # e.g. 'cost: 14.47 GMACs forward per token summed ...'
    with open(tmp_path / "cost.json") as f:
        cost = json.load(f)
    assert len(cost["baseline"]["archs"]) == 5  # FedAvg of each of the 5 tracked archs
    ratio = cost["baseline"]["total_macs"] / cost["superfed"]["total_macs"]
    assert cost["ratios"]["compute_ratio"] == pytest.approx(ratio) and ratio > 1


def _tool(name, *args):
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), name), *args], cwd=ROOT,
                            env=_environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_a_text_run_is_searched_exported_and_its_dense_subnet_scores_as_in_the_supernet(shakespeare,
                                                                                       tmp_path):
    """search (under a MACs-per-token budget) -> export -> evaluate: the exported dense subnet's test
    accuracy equals the masked supernet's for the same arch, as search.json records it."""
    data, workdir, _ = shakespeare
    copy = str(tmp_path / "run")
    subprocess.run(["cp", "-r", workdir, copy], check=True)  # the module's run stays untouched
    _tool("superfed-search", f"--workdir={copy}", "--budget", "macs=3000", "--generations=2",
          "--population=6")
    with open(os.path.join(copy, "search.json")) as f:
        best = json.load(f)["results"][0]["best"]
    assert best["macs"] <= 3000
    _tool("superfed-export", f"--workdir={copy}", "--arch=search:macs=3000", f"--out={tmp_path / 'model'}")
    evaluated = _tool("superfed-evaluate", f"--model={tmp_path / 'model'}", "--json").stdout
    evaluated = json.loads(evaluated.splitlines()[-1])
    assert evaluated["accuracy"] == pytest.approx(best["test_accuracy"], abs=1e-6)
    assert evaluated["perplexity"] == pytest.approx(math.exp(evaluated["loss"]))
