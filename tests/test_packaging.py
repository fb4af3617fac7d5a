"""Packaging: the names the package exports, what importing the aggregation loads, the message of each
missing extra, the console scripts, and the package installed without extras into a fresh virtual
environment (the `slow` test)."""
import importlib
import importlib.util
import inspect
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import superfed_jax
from superfed_jax import _extras

REPO = Path(__file__).resolve().parents[1]

# Written out here rather than read from the package, so that a name dropped from `__all__` or moved to
# another module fails the test.
PUBLIC_NAMES = {
    "masked_mean": "superfed_jax.aggregation",
    "masked_sums": "superfed_jax.aggregation",
    "finalize": "superfed_jax.aggregation",
    "SearchSpace": "superfed_jax.supernet.ofa_resnet.space",
    "Arch": "superfed_jax.supernet.ofa_resnet.space",
    "base_config": "superfed_jax.config",
    "train_and_evaluate": "superfed_jax.run.train",
    "SearchOptions": "superfed_jax.posttrain.search",
    "search_run": "superfed_jax.posttrain.search",
    "export_run": "superfed_jax.posttrain.export",
    "load_exported": "superfed_jax.posttrain.export",
    "load_run": "superfed_jax.reports.run_log",
}

# What a user of the aggregation alone must not pay for: the checkpointing and model libraries and every
# optional extra.
HEAVY_MODULES = ("orbax", "flax", "tensorflow_datasets", "matplotlib", "tensorboardX", "sklearn")

CONSOLE_SCRIPTS = {
    "superfed-train": "superfed_jax.run.launch",
    "superfed-search": "superfed_jax.posttrain.search",
    "superfed-export": "superfed_jax.posttrain.export",
    "superfed-evaluate": "superfed_jax.posttrain.evaluate_export",
    "superfed-report": "superfed_jax.reports.cli",
    "superfed-cost": "superfed_jax.reports.arch_size",
    "superfed-memory": "superfed_jax.run.memory",
    "superfed-config": "superfed_jax.config_reference",
}


def pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def env_without_pythonpath() -> dict:
    """The environment minus PYTHONPATH, so a subprocess imports only what its interpreter has installed."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def loaded_after(code: str) -> list[str]:
    """Which of HEAVY_MODULES a fresh interpreter has imported after running `code`."""
    probe = (f"import json, sys\n{code}\n"
             f"print(json.dumps(sorted(name for name in {HEAVY_MODULES!r} if name in sys.modules)))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------- front door


def test_all_is_exactly_the_public_api():
    assert sorted(superfed_jax.__all__) == sorted(PUBLIC_NAMES)


@pytest.mark.parametrize("name", sorted(PUBLIC_NAMES))
def test_every_public_name_is_the_object_of_its_module(name):
    defining_module = importlib.import_module(PUBLIC_NAMES[name])
    assert getattr(superfed_jax, name) is getattr(defining_module, name)


def test_from_import_of_a_lazy_name():
    namespace = {}
    exec("from superfed_jax import base_config", namespace)
    assert namespace["base_config"] is importlib.import_module("superfed_jax.config").base_config


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        superfed_jax.no_such_name  # noqa: B018


def test_dir_lists_the_lazy_names():
    assert set(PUBLIC_NAMES) <= set(dir(superfed_jax))


def test_version_is_the_single_source_of_the_package_version():
    config = pyproject()
    assert "version" in config["project"]["dynamic"] and "version" not in config["project"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "superfed_jax.__version__"}
    parts = superfed_jax.__version__.split(".")
    assert len(parts) == 3 and all(part.isdigit() for part in parts)


def test_importing_the_aggregation_loads_no_heavy_module():
    assert loaded_after("from superfed_jax import masked_mean") == []


def test_the_probe_sees_heavy_modules_when_they_are_loaded():
    """The check above can fail: asking for an export entry point does load orbax and flax."""
    loaded = loaded_after("import superfed_jax; superfed_jax.export_run")
    assert "orbax" in loaded and "flax" in loaded


# --------------------------------------------------------------------------------- setup.py, README


def test_setup_py_is_a_shim_without_metadata():
    """setup.py only calls `setup()`: every piece of metadata stays in pyproject.toml (one source)."""
    import ast
    tree = ast.parse((REPO / "setup.py").read_text())
    body = [node for node in tree.body
            if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]  # docstring
    assert len(body) == 2, ast.dump(tree)
    imported, call = body
    assert isinstance(imported, ast.ImportFrom) and imported.module == "setuptools"
    assert [alias.name for alias in imported.names] == ["setup"]
    assert isinstance(call, ast.Expr) and isinstance(call.value, ast.Call)
    assert isinstance(call.value.func, ast.Name) and call.value.func.id == "setup"
    assert call.value.args == [] and call.value.keywords == []


def test_the_version_has_its_changelog_section():
    """Every release is described in CHANGELOG.md (0.2.0: issue 25 item 10, the renames)."""
    assert tuple(int(part) for part in superfed_jax.__version__.split(".")) >= (0, 2, 0)
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"\n## [{superfed_jax.__version__}] - " in changelog


def readme_section(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def table_rows(section: str) -> dict:
    """{first cell: the whole row} of the markdown table rows of `section`."""
    return {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| `")}


def test_readme_tables_list_every_module_benchmark_and_doc():
    rows = table_rows(readme_section("What exists"))
    table = "\n".join(rows.values())
    package = REPO / "superfed_jax"
    for path in sorted(package.glob("*.py")):  # top-level modules: named in the table
        assert f"`{path.name}`" in table or f"`superfed_jax/{path.name}`" in table, path.name
    for folder in sorted(p for p in package.iterdir() if (p / "__init__.py").exists()):
        row = next((r for key, r in rows.items() if key.startswith(f"`superfed_jax/{folder.name}/`")
                    or f"`{folder.name}/`" in key), None)
        assert row is not None, f"no row for superfed_jax/{folder.name}/"
        for path in sorted(folder.rglob("*.py")):
            if path.name != "__init__.py" and "__pycache__" not in path.parts:
                assert f"`{path.stem}`" in row, f"{path.relative_to(REPO)} is missing from its row"
        for sub in sorted(p for p in folder.iterdir() if (p / "__init__.py").exists()):
            assert f"`{sub.name}/`" in row or f"`{sub.name}/`" in table, sub
    benchmarks = rows["`benchmarks/`"]
    for path in sorted((REPO / "benchmarks").glob("*.py")) + sorted((REPO / "benchmarks").glob("*.md")):
        assert f"`{path.name}`" in benchmarks, f"benchmarks/{path.name}"
    docs = rows["`docs/`"]
    for path in sorted((REPO / "docs").glob("*.md")):
        assert f"`{path.name}`" in docs, f"docs/{path.name}"


def test_readme_commands_table_lists_every_console_script():
    table = readme_section("Installing the package")
    for script, module in CONSOLE_SCRIPTS.items():
        assert f"| `{script}` |" in table, script


def test_readme_says_how_to_install_from_a_clone():
    section = readme_section("Installing the package")
    assert "From a clone" in section and "pip install -e '.[all,test]'" in section


# ---------------------------------------------------------------------------------------------- extras


def block(monkeypatch, top: str) -> None:
    """Makes `import top` and `import top.anything` fail for the rest of the test.

    A None entry in sys.modules makes the import system raise ImportError; submodules already imported
    are blocked too, since an import finds them in sys.modules before looking at their parent.
    """
    for name in [name for name in sys.modules if name == top or name.startswith(top + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, top, None)


def assert_names_extra(error: pytest.ExceptionInfo, distribution: str, extra: str) -> None:
    message = str(error.value)
    assert distribution in message
    assert f"pip install 'superfed_jax[{extra}]'" in message
    assert isinstance(error.value.__cause__, ImportError)  # the original failure stays visible


def test_digits_without_scikit_learn(monkeypatch):
    from superfed_jax.data import digits
    block(monkeypatch, "sklearn")
    with pytest.raises(ImportError) as error:
        digits.load_digits_arrays()
    assert_names_extra(error, "scikit-learn", "digits")


def test_cifar_tfds_without_tensorflow_datasets(monkeypatch, tmp_path):
    from superfed_jax.data import cifar
    (tmp_path / "cifar10").mkdir()  # past the folder check, up to opening the split
    block(monkeypatch, "tensorflow_datasets")
    with pytest.raises(ImportError) as error:
        cifar.load_cifar_tfds("cifar10", str(tmp_path))
    assert_names_extra(error, "tensorflow-datasets", "cifar")


def test_report_plot_without_matplotlib(monkeypatch, tmp_path):
    from superfed_jax.reports import plot
    block(monkeypatch, "matplotlib")
    with pytest.raises(ImportError) as error:
        plot.plot_pareto(str(tmp_path / "pareto.png"), [], "title")
    assert_names_extra(error, "matplotlib", "plots")
    assert not (tmp_path / "pareto.png").exists()


def test_tensorboard_writer_without_tensorboardx(monkeypatch, tmp_path):
    from superfed_jax.run import tb_writer
    block(monkeypatch, "tensorboardX")
    with pytest.raises(ImportError) as error:
        tb_writer.open_writer(str(tmp_path))
    assert_names_extra(error, "tensorboardX", "tensorboard")


def test_privacy_accounting_without_dp_accounting(monkeypatch):
    from superfed_jax.federated import privacy
    block(monkeypatch, "dp_accounting")
    with pytest.raises(ImportError) as error:
        privacy.epsilon(1.0, 91, 3, 2, 1e-5)  # arguments no other test caches
    assert_names_extra(error, "dp-accounting", "dp")


def test_every_extra_named_in_a_message_installs_that_package():
    extras = pyproject()["project"]["optional-dependencies"]
    for module, (distribution, extra, _) in _extras.EXTRAS.items():
        requirements = [r.split(">")[0].split("=")[0].split("[")[0].lower() for r in extras[extra]]
        assert distribution.lower() in requirements, (module, extra, extras[extra])


def test_all_is_the_union_of_the_optional_extras_but_wandb():
    # wandb stays out of `all`: an account-backed service with a large dependency tree that no shipped
    # config uses (pyproject.toml says so beside it).
    extras = pyproject()["project"]["optional-dependencies"]
    assert extras["all"] == ["superfed_jax[cifar,digits,dp,plots,tensorboard,text]"]
    assert extras["wandb"][0].startswith("wandb>=")


def test_core_dependencies_hold_no_extra():
    core = " ".join(pyproject()["project"]["dependencies"]).lower()
    for distribution, _, _ in _extras.EXTRAS.values():
        assert distribution.lower() not in core


def test_require_checks_the_extra_it_is_given():
    with pytest.raises(ValueError, match=r"'matplotlib'.*'plots', not 'cifar'"):
        _extras.require("matplotlib", "cifar")


def test_require_returns_the_module():
    assert _extras.require("json", "plots") is json


# ------------------------------------------------------------------------------------- console scripts


def test_console_scripts_are_declared():
    scripts = pyproject()["project"]["scripts"]
    assert scripts == {name: f"{module}:console" for name, module in CONSOLE_SCRIPTS.items()}


@pytest.mark.parametrize("script", sorted(CONSOLE_SCRIPTS))
def test_console_script_target_takes_no_arguments(script):
    module_name = CONSOLE_SCRIPTS[script]
    if importlib.util.find_spec(module_name) is None:
        # superfed-train and superfed-cost name modules that other branches add.
        pytest.skip(f"{module_name} is not in this checkout yet")
    console = importlib.import_module(module_name).console
    assert callable(console) and not inspect.signature(console).parameters


def run_python(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_console_does_what_running_the_module_does():
    arch = '--arch={"d":[0,0,0,0],"e":0.1}'
    as_module = run_python("-m", "superfed_jax.reports.arch_size", arch, "--json")
    as_console = run_python("-c", "import sys; from superfed_jax.reports import arch_size; "
                            f"sys.argv = ['superfed-cost', {arch!r}, '--json']; arch_size.console()")
    assert as_module.returncode == as_console.returncode == 0, as_module.stderr + as_console.stderr
    assert json.loads(as_console.stdout) == json.loads(as_module.stdout)


def test_report_console_exits_with_mains_status(monkeypatch, tmp_path, capsys):
    from superfed_jax.reports import cli
    missing = str(tmp_path / "no_run")
    expected = cli.main([missing])
    monkeypatch.setattr(sys, "argv", ["superfed-report", missing])
    with pytest.raises(SystemExit) as exit_info:
        cli.console()
    assert expected == 2 and exit_info.value.code == expected


# ----------------------------------------------------------------------------- install without extras


def copy_distribution_source(destination: Path) -> Path:
    """What building the package reads, copied so that the build writes nothing into the checkout."""
    destination.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, destination / name)
    shutil.copytree(REPO / "superfed_jax", destination / "superfed_jax",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return destination


# Runs inside the fresh environment. Two clients train parts of a 3-element parameter:
#   element 0: both, weights 1 and 3 -> (1*1 + 3*5) / (1 + 3) = 4
#   element 1: client 0 only         -> 2
#   element 2: nobody                -> the previous value, 9
CHECK_CORE_INSTALL = """
import importlib.metadata, importlib.util, json
import jax.numpy as jnp
import superfed_jax
from superfed_jax import masked_mean
params = {"w": jnp.array([[1.0, 2.0, 3.0], [5.0, 6.0, 7.0]])}
masks = {"w": jnp.array([[1, 1, 0], [1, 0, 0]], bool)}
new = masked_mean(params, masks, jnp.array([1.0, 3.0]), {"w": jnp.full(3, 9.0)})
print(json.dumps({
    "mean": [float(v) for v in new["w"]],
    "file": superfed_jax.__file__,
    "version": superfed_jax.__version__,
    "metadata_version": importlib.metadata.version("superfed_jax"),
    "installed": {name: importlib.util.find_spec(name) is not None
                  for name in ("tensorflow_datasets", "matplotlib", "tensorboardX", "sklearn", "h5py",
                               "dp_accounting")},
}))
"""


@pytest.mark.slow
def test_core_install_into_a_fresh_environment(tmp_path):
    """`pip install superfed_jax` without extras: the aggregation works and no extra came along.

    A plain install from PyPI, dependencies resolved by pip from pyproject.toml (that is what is under
    test); pip's cache keeps reruns to about a minute. The check runs outside the checkout and without
    PYTHONPATH, so only the installed copy can be imported.
    """
    source = copy_distribution_source(tmp_path / "source")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              str(source)], env=env_without_pythonpath(), cwd=tmp_path,
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout + install.stderr

    check = subprocess.run([str(python), "-c", CHECK_CORE_INSTALL], env=env_without_pythonpath(),
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    result = json.loads(check.stdout.strip().splitlines()[-1])
    assert result["mean"] == [4.0, 2.0, 9.0]
    assert Path(result["file"]).is_relative_to(venv)
    assert result["version"] == result["metadata_version"] == superfed_jax.__version__
    assert result["installed"] == {"tensorflow_datasets": False, "matplotlib": False,
                                   "tensorboardX": False, "sklearn": False, "h5py": False,
                                   "dp_accounting": False}

    # A console script of the core install: the report command, importable without matplotlib, answers
    # a missing run directory with its usual message and status.
    report = subprocess.run([str(venv / "bin" / "superfed-report"), str(tmp_path / "no_run")],
                            env=env_without_pythonpath(), cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert report.returncode == 2 and report.stderr.startswith("error: "), report.stderr
