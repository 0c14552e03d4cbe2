"""The house rules a reader relies on, checked so they stay true: small modules and functions,
no import cycle, and the two processes' packages never importing each other."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Each app package and the folder it lives in (the client is a distribution of its own).
APP_PACKAGES = (("praxiom_progress", ROOT), ("praxiom_client", ROOT / "clients" / "python"))
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
#: Functions that are tables rather than logic, allowed past the limit (say why).
TABLES = {
    (
        "praxiom_progress/gateway/openapi.py",
        "_task_operations",
    ),  # the OpenAPI description of the task endpoints
}


def _modules() -> Iterator[tuple[str, Path]]:
    for package, home in APP_PACKAGES:
        for path in sorted((home / package).rglob("*.py")):
            relative = path.relative_to(home)
            name = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
            yield name, path


MODULES = dict(_modules())


def _type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """Imports under `if TYPE_CHECKING:`: read by the type checker, never run."""
    return {
        node
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for statement in block.body
        for node in ast.walk(statement)
    }


def _imports(name: str, path: Path) -> set[str]:
    """The app modules `name` imports when it runs, anywhere in it (a function-level import
    counts too; one for the type checker only does not)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(target for target in targets if target in MODULES)
    found.discard(name)
    return found


def test_no_module_of_app_code_is_over_the_limit() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in MODULES.values()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_no_function_of_app_code_is_over_the_limit() -> None:
    long = {}
    for path in MODULES.values():
        relative = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and (relative, node.name) not in TABLES:
                    long[f"{relative}:{node.name}"] = lines
    assert not long, long


def test_there_is_no_import_cycle() -> None:
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    # Tarjan-free check: a module is in a cycle when it can reach itself.
    for start in graph:
        seen: set[str] = set()
        stack = list(graph[start])
        while stack:
            current = stack.pop()
            assert current != start, f"{start} imports itself through {sorted(seen)}"
            if current not in seen:
                seen.add(current)
                stack.extend(graph[current])


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("praxiom_progress.gateway", "praxiom_progress.runner"),
        ("praxiom_progress.runner", "praxiom_progress.gateway"),
    ],
)
def test_the_gateway_and_the_runner_never_import_each_other(importer: str, imported: str) -> None:
    crossing = {
        name: sorted(target for target in _imports(name, path) if target.startswith(imported))
        for name, path in MODULES.items()
        if name.startswith(importer)
    }
    assert not {name: found for name, found in crossing.items() if found}


def test_the_client_needs_nothing_but_the_standard_library_and_aiohttp() -> None:
    """praxiom-client's one dependency is aiohttp: an import of anything else (the server's
    packages included) would break it where only the client is installed."""
    allowed = {"aiohttp", "praxiom_client", *sys.stdlib_module_names}
    foreign = {}
    for name, path in MODULES.items():
        if not name.startswith("praxiom_client"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops = {node.module.partition(".")[0]}
            else:
                continue
            if tops - allowed:
                foreign[name] = sorted(tops - allowed)
    assert not foreign, foreign
