"""The rules of direction in docs/ARCHITECTURE.md, checked."""

from __future__ import annotations

import ast
from pathlib import Path

import consentry

SRC = Path(consentry.__file__).parent
FORBIDDEN_IN_MODELS = {"fastapi", "starlette", "sqlalchemy", "duckdb", "httpx", "uvicorn"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_models_hold_no_http_sql_or_engines() -> None:
    models = list(SRC.glob("*/models.py"))
    assert models, "expected capability models"
    for path in models:
        assert not _imports(path) & FORBIDDEN_IN_MODELS, path


def test_no_http_in_services() -> None:
    for path in SRC.glob("*/service.py"):
        assert not _imports(path) & {"fastapi", "starlette"}, path


def test_tables_are_touched_only_by_their_own_capability() -> None:
    for path in SRC.rglob("*.py"):
        capability = path.relative_to(SRC).parts[0]
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith(".tables"):
                owner = node.module.split(".")[1]
                allowed = (
                    owner == capability
                    or capability == "migrations"
                    or (node.names[0].name == "BigId")
                )
                assert allowed, f"{path} imports {node.module}"


def test_errors_module_knows_nothing_of_http() -> None:
    assert not _imports(SRC / "errors.py") & {"fastapi", "starlette", "http"}


def test_public_package_exports_what_it_declares() -> None:
    assert consentry.__all__ == ["__version__"]
    for name in consentry.__all__:
        assert hasattr(consentry, name)
    from consentry.profiles import service

    for name in service.__all__:
        assert hasattr(service, name), name
