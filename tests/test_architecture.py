"""The layout's rules, checked on the code itself (lint-imports checks the layers in CI)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "conversations"
# The web layer and the admin answer HTTP; nothing under them may.
SPEAKS_HTTP = ("web/", "admin/")
MAX_LINES = 500


def _modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts]


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_only_the_web_layer_imports_django_http_or_shortcuts():
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            n for n in _imported(path) if n.startswith(("django.http", "django.shortcuts"))
        )
        for path in _modules()
        if not str(path.relative_to(PACKAGE)).startswith(SPEAKS_HTTP)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_there_is_no_import_cycle_anywhere():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("conversations")
    cycles = [
        (importer, imported)
        for importer in sorted(graph.modules)
        for imported in graph.find_modules_directly_imported_by(importer)
        if imported != importer
        and not importer.startswith(imported + ".")  # a package's __init__ is no cycle
        and graph.chain_exists(importer=imported, imported=importer)
    ]
    assert cycles == []


def test_no_module_is_long_without_saying_why():
    long_ones = []
    for path in _modules():
        lines = path.read_text(encoding="utf-8").count("\n")
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if lines > MAX_LINES and "Why this is long:" not in docstring:
            long_ones.append((str(path.relative_to(PACKAGE)), lines))
    assert long_ones == []


def test_only_the_openai_backend_imports_openai():
    importers = {
        str(path.relative_to(PACKAGE))
        for path in _modules()
        if any(n == "openai" or n.startswith("openai.") for n in _imported(path))
    }
    assert importers == {"llm/backends/openai.py"}
