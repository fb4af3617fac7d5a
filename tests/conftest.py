"""Test-wide JAX setup: 8 fake CPU devices so sharding logic is exercised without accelerators; one
compilation cache, for this session only, shared by the runs the tests start in subprocesses."""
import atexit
import os
import shutil
import tempfile

# Must happen before jax initialises its backends.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_threefry_partitionable", True)

# The suite starts dozens of real runs (`python launch.py ...` and the posttrain commands), most of them on
# one of a few configs; compiling their round and evaluation is most of each run's time (a :smoke run of 8
# rounds: 34 s of CPU, 8 s with the programs cached, on
# the 2-core AMD EPYC project machine, jax 0.10.2). JAX's persistent cache lets the second run of a
# config load the programs the first compiled. Set after `import jax`, so it reaches only the subprocesses
# (which inherit os.environ) and this process keeps compiling everything itself. The directory is new
# each session: nothing carries over between test runs, and each config is still compiled once. The runs'
# own default cache (superfed_jax/_compilation_cache.py, under the user's home) is never used: the
# variable comes first, and the runs that drop it switch the cache off (JAX_ENABLE_COMPILATION_CACHE=false):
# test_launch's compile-counting run (a user's cold start) and test_multihost's processes.
COMPILATION_CACHE = {"JAX_COMPILATION_CACHE_DIR": tempfile.mkdtemp(prefix="superfed_test_xla_cache_"),
                     "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                     "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
atexit.register(shutil.rmtree, COMPILATION_CACHE["JAX_COMPILATION_CACHE_DIR"], True)
os.environ.update(COMPILATION_CACHE)


# ------------------------------------------------------------------------------- the quick selection
#
# `make test-quick` runs `pytest -m "not subprocess and not heavy and not slow"`: the tests that start no
# process and were measured fast (`heavy` below). A
# test is marked `subprocess` here, at collection, when it can start one: when its function, a fixture it
# uses (directly or through other fixtures) or a parameter it gets reaches, through the functions of the
# test files it calls, a `subprocess` or `multiprocessing` call. Helpers that start runs
# (test_launch.launch, trained_run.run_module, trained_run.workdir and trained_run.loaded, which train the
# shared tiny run on first use) are found that way, so a new test that uses them is classified with no
# marker written by hand. The walk reads code objects only (names a function uses), never runs anything,
# and does not enter the package's own code: a library call that runs git (provenance) is not a run.
import inspect  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import types  # noqa: E402

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
# Module attributes that start a process: `subprocess.run(...)`, `multiprocessing.Process(...)`, ...
PROCESS_MODULES = {"subprocess": ("run", "Popen", "call", "check_call", "check_output"),
                   "multiprocessing": ("Process", "Pool", "get_context")}


def _code_names(code: types.CodeType, local: bool = False) -> set:
    """Every global or attribute name a code object uses (with `local`, its local names too: a module
    imported inside the function), nested functions and lambdas included."""
    names = set(code.co_names) | (set(code.co_varnames) if local else set())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const, local)
    return names


def _is_test_code(obj) -> bool:
    """Whether `obj` (a function or module) is defined in a file of the tests folder."""
    path = getattr(obj, "__file__", None) or getattr(getattr(obj, "__code__", None), "co_filename", "")
    return bool(path) and os.path.dirname(os.path.abspath(path)) == TESTS_DIR


def starts_process(function, seen=None) -> bool:
    """Whether calling `function` can start a process, judged from the names its code uses (see above)."""
    seen = set() if seen is None else seen
    function = inspect.unwrap(function)  # functools.lru_cache, functools.wraps
    code = getattr(function, "__code__", None)
    if code is None or id(code) in seen or not _is_test_code(function):
        return False
    seen.add(id(code))
    names, scope = _code_names(code), function.__globals__
    every_name = _code_names(code, local=True)
    for module_name, calls in PROCESS_MODULES.items():  # imported at the top or inside the function
        if module_name in every_name and names & set(calls):
            return True
    for name in names:
        value = scope.get(name)
        if isinstance(value, types.ModuleType) and _is_test_code(value):  # trained_run.workdir(), ...
            helpers = (getattr(value, n, None) for n in names)
            if any(callable(h) and starts_process(h, seen) for h in helpers):
                return True
        elif callable(value) and starts_process(value, seen):
            return True
    return False


def item_starts_process(item) -> bool:
    """Whether a collected test, its fixtures (all of them, transitively) or its parameters start a process."""
    functions = [getattr(item, "function", None)]
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    functions += [d.func for name in item.fixturenames for d in definitions.get(name, ())]
    callspec = getattr(item, "callspec", None)
    functions += [v for v in (callspec.params.values() if callspec else ()) if callable(v)]
    return any(f is not None and starts_process(f) for f in functions)


# The other half of the quick selection: tests that start no process but compile or train enough to take
# seconds each (a round, a vmapped evaluation). Which ones is measured, not guessed: DURATIONS_FILE holds
# the seconds (setup + call) of each test as `make test-durations` last measured them, and a test at or
# over HEAVY_SECONDS there is marked `heavy`. A test not in the file yet is not `heavy`.
DURATIONS_FILE = os.path.join(TESTS_DIR, "durations.json")
HEAVY_SECONDS = 0.5


def read_durations(path: str = DURATIONS_FILE) -> dict:
    """{test node id: seconds} from `path`; {} when it is missing or unreadable (nothing is marked heavy)."""
    try:
        with open(path) as f:
            durations = json.load(f)
    except (OSError, ValueError):
        return {}
    return durations if isinstance(durations, dict) else {}


def pytest_addoption(parser):
    parser.addoption("--write-durations", default="", metavar="PATH",
                     help="write each test's seconds (setup + call) as JSON to PATH (make test-durations)")


_measured: dict = {}


def pytest_runtest_logreport(report):
    if report.when in ("setup", "call"):
        _measured[report.nodeid] = round(_measured.get(report.nodeid, 0.0) + report.duration, 3)


def pytest_sessionfinish(session):
    path = session.config.getoption("--write-durations")
    if path and _measured:
        with open(path, "w") as f:
            json.dump(dict(sorted(_measured.items())), f, indent=0)
            f.write("\n")


def shared_fixtures(item) -> set:
    """The tests' own fixtures of a wider scope than one test that `item` uses, as (where, name): the
    first test to use one pays its setup (a compile, a trained run), the others get it for free."""
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    shared = set()
    for name in item.fixturenames:
        for definition in definitions.get(name, ()):
            if definition.scope != "function" and _is_test_code(definition.func):
                where = "" if definition.scope == "session" else str(item.path)
                shared.add((where, name))
    return shared


def pytest_collection_modifyitems(config, items):
    """Marks every test that can start a process `subprocess`, and every test measured at HEAVY_SECONDS or
    more `heavy` (the quick selection leaves both out), with the tests sharing a wide-scoped fixture
    with a heavy one (without its first user, the next would pay the fixture's setup)."""
    durations = {} if config.getoption("--write-durations") else read_durations()
    heavy, costly = [], set()
    for item in items:
        if item_starts_process(item):
            item.add_marker("subprocess")
        elif durations.get(item.nodeid, 0.0) >= HEAVY_SECONDS:
            heavy.append(item)
            costly |= shared_fixtures(item)
    for item in items:
        if item in heavy or (costly & shared_fixtures(item) and not item.get_closest_marker("subprocess")):
            item.add_marker("heavy")
