"""Imports only run down the layers: utils <- models <- data <- trust <- evaluation <- inference <- callbacks <- tasks <- CLIs.

A module may import its own package or a lower layer, never a higher one nor a peer of its own
layer, so each part can be understood and tested with what lies below it (docs/ARCHITECTURE.md).
Every import counts, including the ones inside functions.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "stainfree"
LAYERS: dict[str, int] = {
    "utils": 0,  # with the package's own __init__
    "models": 1,
    "data": 2,
    "trust": 3,
    "evaluation": 4,
    "inference": 5,
    "callbacks": 6,
    "tasks": 7,
}
CLI_LAYER = 8  # train.py, eval.py, predict.py, benchmarks/


def _part(module: str) -> str:
    """``stainfree.models.classifier`` -> ``models``; the package itself (``stainfree``) -> ``utils``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "utils"


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every stainfree import in ``path``, relative ones resolved."""
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] if node.module else [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names if name == PACKAGE or name.startswith(PACKAGE + ".")]
    return found


def layer_violations(repo: Path) -> list[str]:
    """Every import that goes up (or sideways) a layer, as 'file:line: a -> b (why)'."""
    sources: list[tuple[Path, str, int, str]] = []
    for path in sorted((repo / "src" / PACKAGE).rglob("*.py")):
        module = ".".join(path.relative_to(repo / "src").with_suffix("").parts).removesuffix(".__init__")
        sources.append((path, module, LAYERS.get(_part(module), -1), _part(module)))
    for path in [*sorted(repo.glob("*.py")), *sorted((repo / "benchmarks").rglob("*.py"))]:
        sources.append((path, path.stem, CLI_LAYER, "<cli>"))
    problems = []
    for path, module, layer, part in sources:
        where = path.relative_to(repo)
        if layer < 0:
            problems.append(f"{where}: {module} is in no layer; put it in a package named in LAYERS")
            continue
        for line, imported in _imports(path, module):
            target = _part(imported)
            if target not in LAYERS:
                problems.append(f"{where}:{line}: {module} -> {imported} (no such layer)")
            elif target != part and LAYERS[target] >= layer:
                problems.append(f"{where}:{line}: {module} -> {imported} ({part} is layer {layer}, "
                                f"{target} is layer {LAYERS[target]})")
    return problems


def test_no_import_goes_up_a_layer() -> None:
    problems = layer_violations(ROOT)
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_the_check_sees_upward_lazy_and_unplaced_imports(tmp_path: Path) -> None:
    """The old back-up arrow (evaluation -> callbacks), a lazy import of a task, a module outside any layer."""
    pkg = tmp_path / "src" / PACKAGE
    for part in ("evaluation", "callbacks", "models", "utils"):
        (pkg / part).mkdir(parents=True)
        (pkg / part / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from stainfree.utils import resolvers\n")
    (pkg / "evaluation" / "evaluate.py").write_text("from stainfree.callbacks.test_artifacts import TestArtifacts\n")
    (pkg / "callbacks" / "report.py").write_text("from ..evaluation import plots\n")  # down: allowed
    (pkg / "models" / "lazy.py").write_text("def f():\n    import stainfree.tasks.train\n")
    (pkg / "training.py").write_text("import stainfree.utils\n")
    problems = "\n".join(layer_violations(tmp_path))
    assert "stainfree.evaluation.evaluate -> stainfree.callbacks.test_artifacts" in problems
    assert "stainfree.models.lazy -> stainfree.tasks.train" in problems
    assert "stainfree.training is in no layer" in problems
    assert "callbacks/report.py" not in problems and len(problems.splitlines()) == 3
