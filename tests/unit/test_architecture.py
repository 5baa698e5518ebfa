"""The rules of direction in docs/ARCHITECTURE.md, checked."""

from __future__ import annotations

import ast
import subprocess
import sys
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


HEAVY_AT_START = ("scipy", "pyarrow", "ibis", "duckdb", "pandas")


def test_the_server_and_the_cli_start_without_the_analytics_stack() -> None:
    """The engine, pyarrow and scipy load with the first analytics run, KPI request or model
    training, not with every server process and CLI command (about 115 MB and 1.4 s)."""
    probe = (
        "import sys\n"
        "import consentry.cli\n"
        "from consentry.api import create_app\n"
        "create_app()\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY_AT_START!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_recommend_loads_each_exported_name_on_first_use() -> None:
    import consentry.recommend as recommend

    for name in recommend.__all__:
        assert getattr(recommend, name) is not None, name
    assert sorted(recommend.__all__) == sorted(recommend._LAZY)
