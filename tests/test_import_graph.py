"""The package's import graph: no cycles, and no module imports from a higher layer than its own.

Every module of `superfed_jax` is read with `ast` (nothing is imported or run), and every import in it
counts, at the top or inside a function: `import superfed_jax.x.y`, `from superfed_jax.x import y`,
`from superfed_jax import x` and relative imports (`from . import x`, `from ..x import y`). An import edge
goes to the most specific module it names: `from superfed_jax.supernet import space` is an edge to
`superfed_jax.supernet.space`, `from superfed_jax.data import Dataset` one to the package
`superfed_jax.data` (its `__init__`). Parents a dotted import also runs (package `__init__`s) are not
counted: the top package's `__init__` is allowed to import everything, so they would be cycles by rule.

The layers, lowest first (`LAYERS` below); a module may import from its own layer or lower ones:
aggregation < supernet < data < federated < the config layer (config, validation, any config_* module)
< reports < run < posttrain < the package's own `__init__` (which may import anything). Imports inside
one layer are allowed, cycles nowhere.
"""
import ast
import os
import re
from typing import Optional

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "superfed_jax"

# Lowest first. A layer is named by the first component of a module's name below the package; the
# config layer also holds any future `config_*` module. The package's own `__init__` is above them all.
LAYERS = (
    # No internal imports: the public aggregation API, and helpers every layer may use (optional
    # dependencies, reading a JSON file, the command lines' error handling, what every command does first,
    # the compilation cache the commands that compile switch on).
    ("foundation", ("aggregation", "_extras", "_json_file", "_cli", "_console", "_fields", "_import_path",
                    "_readable", "_compilation_cache")),
    ("supernet", ("supernet",)),
    ("data", ("data",)),
    ("federated", ("federated",)),
    ("config layer", ("config", "validation", "config_*", "configs")),
    ("reports", ("reports",)),
    ("run", ("run",)),
    ("posttrain", ("posttrain",)),
)
PACKAGE_INIT_LAYER = "package __init__"


# ------------------------------------------------------------------------------------- the checker


def find_modules(package_dir: str, package: str) -> dict:
    """{module name: (file path, is a package `__init__`)} for every .py file under `package_dir`."""
    modules = {}
    for folder, subfolders, files in os.walk(package_dir):
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
        relative = os.path.relpath(folder, package_dir)
        prefix = package if relative == "." else ".".join([package, *relative.split(os.sep)])
        for file in sorted(files):
            if not file.endswith(".py"):
                continue
            stem = file[:-3]
            name = prefix if stem == "__init__" else f"{prefix}.{stem}"
            modules[name] = (os.path.join(folder, file), stem == "__init__")
    return modules


def most_specific_module(name: str, modules) -> Optional[str]:
    """The longest known module that `name` is or lies inside (`a.b.c` -> `a.b` if only that exists)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def absolute_base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names (its `from` part), resolving leading dots."""
    if not node.level:
        return node.module or ""
    here = module.split(".") if is_package else module.split(".")[:-1]  # the importer's package
    if node.level - 1 > len(here) - 1:
        raise ValueError(f"{module}: relative import beyond the top package (level {node.level})")
    base = here[:len(here) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: str, is_package: bool, modules) -> set:
    """The package modules `module` imports anywhere in its file (top level, functions, branches)."""
    with open(path) as f:
        tree = ast.parse(f.read(), filename=path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = absolute_base(module, is_package, node)
            # `from pkg import sub` imports the module pkg.sub when there is one, else a name of pkg.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                     for alias in node.names]
        else:
            continue
        for name in names:
            target = most_specific_module(name, modules)
            if target is not None:  # None: outside the package; `module` itself: a cycle of one
                found.add(target)
    return found


def import_graph(package_dir: str, package: str) -> dict:
    """{module: sorted list of the package modules it imports} for the package at `package_dir`."""
    modules = find_modules(package_dir, package)
    return {name: sorted(imports_of(name, path, is_package, modules))
            for name, (path, is_package) in modules.items()}


def layer_of(module: str, package: str) -> tuple:
    """(rank, layer name) of a module; rank len(LAYERS) for the package `__init__`. Unknown: ValueError."""
    if module == package:
        return len(LAYERS), PACKAGE_INIT_LAYER
    top = module[len(package) + 1:].split(".")[0]
    for rank, (name, tops) in enumerate(LAYERS):
        if any(top == t or (t.endswith("*") and top.startswith(t[:-1])) for t in tops):
            return rank, name
    allowed = ", ".join(t for _, tops in LAYERS for t in tops)
    raise ValueError(f"module {module}: {top!r} belongs to no layer; allowed top-level names: {allowed} "
                     f"(add a new one to LAYERS in tests/test_import_graph.py)")


def upward_imports(graph: dict, package: str) -> list:
    """Every import from a higher layer, as lines 'importer (layer) imports imported (higher layer)'."""
    lines = []
    for importer, targets in sorted(graph.items()):
        rank, layer = layer_of(importer, package)
        for target in targets:
            target_rank, target_layer = layer_of(target, package)
            if target_rank > rank:
                lines.append(f"{importer} ({layer}) imports {target} ({target_layer})")
    return lines


def strongly_connected_components(graph: dict) -> list:
    """Tarjan's algorithm, iterative (no recursion limit); components as sorted lists."""
    index, lowlink, on_stack, stack, components = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = lowlink[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = lowlink[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                elif child in on_stack:
                    lowlink[node] = min(lowlink[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                lowlink[parent] = min(lowlink[parent], lowlink[node])
            if lowlink[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def cycle_through(graph: dict, component: list) -> list:
    """A shortest import cycle from the component's first module back to it, as [a, b, ..., a]."""
    members, start = set(component), component[0]
    previous, frontier = {start: None}, [start]
    while frontier:  # breadth first inside the component
        following = []
        for node in frontier:
            for child in graph[node]:
                if child == start:
                    path = [node]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return path[::-1] + [start]
                if child in members and child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {component}")  # cannot happen for a real component


def import_cycles(graph: dict) -> list:
    """(modules, one cycle) per strongly connected component with a cycle (2+ modules or a self-import)."""
    return [(component, cycle_through(graph, component)) for component in strongly_connected_components(graph)
            if len(component) > 1 or component[0] in graph[component[0]]]


def describe_cycles(cycles: list) -> str:
    """One line per component: a cycle in it, and all the modules tangled with it."""
    return "\n".join(f"{' -> '.join(cycle)}   (modules on cycles together: {', '.join(component)})"
                     for component, cycle in cycles)


# ------------------------------------------------------------------------------------- family boundaries
# Issue 20: a supernet family lives in its own folder `supernet/<family>/`; everything above `supernet/`
# talks to it only through `supernet/family.py` (and the family-neutral `supernet/archs.py`, `conv.py`).

# Modules that must know no family: the layers above supernet/ except the package `__init__` (which
# re-exports the default family's public types) and the data layer (it reads datasets, not models).
FAMILY_BLIND = ("federated", "run", "reports", "posttrain", "config", "config_*", "validation")


def is_family_blind(module: str, package: str) -> bool:
    top = module[len(package) + 1:].split(".")[0] if module != package else ""
    return any(top == t or (t.endswith("*") and top.startswith(t[:-1])) for t in FAMILY_BLIND)


def family_folders(package_dir: str) -> list:
    """The family folders: every sub-package of `supernet/` (e.g. 'ofa_resnet')."""
    supernet = os.path.join(package_dir, "supernet")
    return sorted(d for d in os.listdir(supernet)
                  if os.path.isfile(os.path.join(supernet, d, "__init__.py")))


def family_internal_imports(graph: dict, package: str) -> list:
    """Lines 'importer imports target' for family-blind modules importing any supernet module past the
    interface (`supernet/family.py`, the family-neutral `archs.py` and `conv.py`): a family's folder or
    anything new that is not declared part of the interface."""
    interface = {f"{package}.supernet", f"{package}.supernet.family", f"{package}.supernet.archs",
                 f"{package}.supernet.conv"}
    return [f"{importer} imports {target}" for importer, targets in sorted(graph.items())
            if is_family_blind(importer, package)
            for target in targets
            if (target + ".").startswith(f"{package}.supernet.") and target not in interface]


def family_field_mentions(package_dir: str, package: str, names: list) -> list:
    """Lines 'path:line: name' for every family-blind module's line naming one of a family's own fields."""
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    lines = []
    for module, (path, _) in sorted(find_modules(package_dir, package).items()):
        if not is_family_blind(module, package):
            continue
        with open(path) as f:
            for number, line in enumerate(f, 1):
                for match in pattern.finditer(line):
                    lines.append(f"{os.path.relpath(path, package_dir)}:{number}: {match.group(1)}")
    return lines


# What only the OFA-ResNet knows: its space fields (read from its own declaration) and its arch's leaves.
def ofa_resnet_names() -> list:
    from superfed_jax.supernet.ofa_resnet import family
    # num_classes is every classifier's; "divisor" is a plain word too (the divisors of a client count).
    return sorted({f.key for f in family.SPACE_FIELDS} - {"num_classes", "divisor"}
                  | {"SearchSpace", "num_stages", "num_blocks", "mid_table", "max_mids", "DenseSubnet",
                     "subnet_shape"})


def test_layers_above_supernet_import_no_family_internals(graph):
    families = family_folders(os.path.join(ROOT, PACKAGE))
    assert "ofa_resnet" in families
    violations = family_internal_imports(graph, PACKAGE)
    assert not violations, "family internals imported above supernet/:\n" + "\n".join(violations)


def test_layers_above_supernet_name_no_family_fields():
    mentions = family_field_mentions(os.path.join(ROOT, PACKAGE), PACKAGE, ofa_resnet_names())
    assert not mentions, "a family's own names above supernet/:\n" + "\n".join(mentions)


def test_boundary_checks_catch_a_module_that_reaches_into_a_family(tmp_path):
    files = dict(CLEAN)
    files["supernet/family.py"] = ""
    files["config.py"] = "from fakepkg.supernet import family\n"  # through the interface: allowed
    files["supernet/fam/__init__.py"] = ""
    files["supernet/fam/space.py"] = "import numpy\n"
    files["federated/__init__.py"] = ""
    files["federated/round.py"] = ("from fakepkg.supernet.fam import space\n"
                                   "def f(space):\n    return space.stage_widths\n")
    package_dir = write_package(tmp_path, files)
    graph_ = import_graph(package_dir, "fakepkg")
    assert family_folders(package_dir) == ["fam"]
    assert family_internal_imports(graph_, "fakepkg") == [
        "fakepkg.federated.round imports fakepkg.supernet.fam.space"]
    assert family_field_mentions(package_dir, "fakepkg", ["stage_widths", "stem_width"]) == [
        f"federated{os.sep}round.py:3: stage_widths"]
    # The family's own folder may use both.
    files["federated/round.py"] = "from fakepkg.supernet import family\n"
    graph_ = import_graph(write_package(tmp_path, files), "fakepkg")
    assert family_internal_imports(graph_, "fakepkg") == []


# ------------------------------------------------------------------------------------- the real package


@pytest.fixture(scope="module")
def graph():
    return import_graph(os.path.join(ROOT, PACKAGE), PACKAGE)


def test_walk_sees_the_package(graph):
    """The walk is not vacuous: every layer has modules, and imports between layers are seen."""
    ranks = {layer_of(module, PACKAGE)[0] for module in graph}
    assert ranks == set(range(len(LAYERS) + 1))
    layer_edges = {(layer_of(a, PACKAGE)[1], layer_of(b, PACKAGE)[1]) for a in graph for b in graph[a]}
    assert {("run", "federated"), ("posttrain", "supernet"), ("federated", "supernet")} <= layer_edges
    assert sum(len(targets) for targets in graph.values()) > 50


def test_package_has_no_import_cycles(graph):
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + describe_cycles(cycles)


def test_package_imports_only_from_its_own_or_lower_layers(graph):
    violations = upward_imports(graph, PACKAGE)
    assert not violations, "imports from a higher layer:\n" + "\n".join(violations)



# ------------------------------------------------------------------------------------- the checker's own tests


def write_package(root, files: dict) -> str:
    """Writes {relative path: source} under root/fakepkg; returns the package directory."""
    for relative, source in files.items():
        path = root / "fakepkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return str(root / "fakepkg")


CLEAN = {
    "__init__.py": "from fakepkg import posttrain\nfrom .run import train\n",
    "aggregation.py": "import numpy\n",
    "supernet/__init__.py": "",
    "supernet/space.py": "from fakepkg import aggregation\n",
    "supernet/model.py": "from . import space\nfrom .space import Arch\n",
    "data/__init__.py": "from fakepkg.data.loaders import load\n",
    "data/loaders.py": "import fakepkg.supernet.model\n",
    "config.py": "from fakepkg.supernet import space as space_lib\n",
    "config_extra.py": "from fakepkg import config, validation\n",
    "validation.py": "from fakepkg import config\n",
    "run/__init__.py": "",
    "run/train.py": "from ..config import base\nfrom ..data import load\n\ndef f():\n    from fakepkg.reports import x\n",
    "reports/__init__.py": "",
    "reports/x.py": "",
    "posttrain/__init__.py": "",
}


def test_checker_passes_a_clean_package_and_resolves_every_import_form(tmp_path):
    graph = import_graph(write_package(tmp_path, CLEAN), "fakepkg")
    assert graph["fakepkg"] == ["fakepkg.posttrain", "fakepkg.run.train"]
    assert graph["fakepkg.supernet.model"] == ["fakepkg.supernet.space"]  # `from . import` and `from .space`
    assert graph["fakepkg.data"] == ["fakepkg.data.loaders"]
    assert graph["fakepkg.data.loaders"] == ["fakepkg.supernet.model"]  # a dotted `import`
    assert graph["fakepkg.config_extra"] == ["fakepkg.config", "fakepkg.validation"]
    # `..data import load` names the data package's __init__; the import inside a function counts.
    assert graph["fakepkg.run.train"] == ["fakepkg.config", "fakepkg.data", "fakepkg.reports.x"]
    assert graph["fakepkg.aggregation"] == []  # outside imports are not edges
    assert upward_imports(graph, "fakepkg") == []
    assert import_cycles(graph) == []


def test_checker_catches_cycles_and_upward_imports(tmp_path):
    files = dict(CLEAN)
    # A cycle of two in one layer, through a function-level import.
    files["supernet/space.py"] = "from fakepkg import aggregation\n\ndef g():\n    from .model import Net\n"
    # Upward: aggregation (lowest) imports the config layer; validation imports the driver.
    files["aggregation.py"] = "def h():\n    import fakepkg.config\n"
    files["validation.py"] = "from fakepkg import config\nfrom fakepkg.run.train import main\n"
    # A cycle of three across layers: reports.x -> run.train (upward) -> reports.x.
    files["reports/x.py"] = "from ..run import train\n"
    graph = import_graph(write_package(tmp_path, files), "fakepkg")
    assert sorted(upward_imports(graph, "fakepkg")) == [
        "fakepkg.aggregation (foundation) imports fakepkg.config (config layer)",
        "fakepkg.reports.x (reports) imports fakepkg.run.train (run)",
        "fakepkg.validation (config layer) imports fakepkg.run.train (run)",
    ]
    cycles = import_cycles(graph)
    components = sorted(component for component, _ in cycles)
    assert components == [
        ["fakepkg.aggregation", "fakepkg.config", "fakepkg.supernet.model", "fakepkg.supernet.space"],
        ["fakepkg.reports.x", "fakepkg.run.train"],
    ]
    for component, cycle in cycles:  # each printed cycle is a real path of imports, closed, in its component
        assert cycle[0] == cycle[-1] and set(cycle) <= set(component)
        for importer, imported in zip(cycle, cycle[1:]):
            assert imported in graph[importer], describe_cycles(cycles)
    # The shortest cycle from the first module (alphabetically) of each component.
    assert sorted(cycle for _, cycle in cycles) == [
        ["fakepkg.aggregation", "fakepkg.config", "fakepkg.supernet.space", "fakepkg.aggregation"],
        ["fakepkg.reports.x", "fakepkg.run.train", "fakepkg.reports.x"],
    ]
    assert "fakepkg.reports.x -> fakepkg.run.train -> fakepkg.reports.x" in describe_cycles(cycles)


def test_checker_catches_a_self_import_and_a_module_outside_every_layer(tmp_path):
    files = dict(CLEAN, **{"reports/x.py": "from fakepkg.reports import x\n", "utils.py": ""})
    graph = import_graph(write_package(tmp_path, files), "fakepkg")
    assert import_cycles(graph) == [(["fakepkg.reports.x"], ["fakepkg.reports.x", "fakepkg.reports.x"])]
    with pytest.raises(ValueError, match=r"module fakepkg.utils: 'utils' belongs to no layer"):
        upward_imports(graph, "fakepkg")
