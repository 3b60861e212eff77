"""The layers hold: `pytest tests/test_architecture.py`.

Four floors, arrows pointing down only (ARCHITECTURE.md):

    cli      thinker.cli             commands, terminals, exit codes
    bench    thinker.bench (bench/)  profiling; benchmarks the sweep service too
    sweeps   thinker.sweeps (sweeps/) Optuna studies, MLflow tracking
    core     thinker.*               model, tasks, training, device, logger, errors

Read from the source with `ast`, imports inside functions included.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"thinker": ROOT / "thinker", "thinker.sweeps": ROOT / "sweeps", "thinker.bench": ROOT / "bench"}
FLOORS = {"core": 0, "sweeps": 1, "bench": 2, "cli": 3}
HEAVY = {"optuna": {"thinker.sweeps"}, "mlflow": {"thinker.sweeps.tracking"}, "pynvml": {"thinker.nvml"}}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def floor(module: str) -> int:
    if module == "thinker.__main__":  # `python -m thinker`: the command line's entry point
        return FLOORS["cli"]
    for prefix, name in (("thinker.cli", "cli"), ("thinker.bench", "bench"), ("thinker.sweeps", "sweeps")):
        if module == prefix or module.startswith(prefix + "."):
            return FLOORS[name]
    return FLOORS["core"]


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at its top or inside a function (a cycle through one is a cycle still)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


MODULES = modules()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_a_floor_above_its_own(name):
    upward = [m for m in imports(MODULES[name]) if m.startswith("thinker") and floor(m) > floor(name)]
    assert upward == [], f"{name} (floor {floor(name)}) imports {upward}"


def test_no_import_cycles_between_modules():
    graph = {name: {m for m in imports(path) if m in MODULES and m != name}
             for name, path in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


@pytest.mark.parametrize("library", sorted(HEAVY))
def test_heavy_optional_libraries_enter_at_one_boundary(library):
    users = {name for name, path in MODULES.items()
             if any(m == library or m.startswith(library + ".") for m in imports(path))}
    allowed = HEAVY[library]
    outside = sorted(u for u in users if not any(u == a or u.startswith(a + ".") for a in allowed))
    assert outside == [], f"{library} imported outside {sorted(allowed)}: {outside}"


def test_the_core_imports_no_optional_library():
    for name, path in MODULES.items():
        if floor(name) == FLOORS["core"]:
            assert not {m.split(".")[0] for m in imports(path)} & {"optuna", "mlflow", "pandas", "typer"}, name


def test_no_file_is_a_pile_of_jobs():
    long = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    # every module stays under 300 lines (the tasks are a package, a file per family)
    assert {n: lines for n, lines in long.items() if lines > 300} == {}
