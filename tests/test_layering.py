"""No import may point up the layers: sam3_core < tools, agent < eval, serving < cli.

Every ``.py`` file of each package is parsed with :mod:`ast` (nothing is imported), so imports inside functions,
relative imports and ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEB_FRAMEWORKS = {"fastapi", "starlette", "uvicorn", "mcp"}
#: package -> top-level modules it must never import
FORBIDDEN: dict[str, set[str]] = {
    "sam3_core": {"agent", "tools", "eval", "serving", "cli"},
    "tools": {"serving", "eval", "cli"} | WEB_FRAMEWORKS,
    "agent": {"serving", "eval", "cli"},
    "prompts": {"agent", "tools", "eval", "serving", "cli"},
    "eval": {"cli"},
    "serving": {"cli"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in the file at ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            found += [(node.lineno, f"{name}.{alias.name}" if name else alias.name) for alias in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and _is_dynamic_import(node.func)):
            found.append((node.lineno, node.args[0].value))
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    return (isinstance(func, ast.Name) and func.id in ("__import__", "import_module")) or (
        isinstance(func, ast.Attribute) and func.attr == "import_module")


def layer_violations(package: str, forbidden: set[str]) -> list[str]:
    """``file:line imports name`` for every import of a forbidden top-level module under ``package``."""
    problems = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, name in imported_modules(path):
            if name.split(".")[0] in forbidden:
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return problems


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_points_up_the_layers(package):
    assert (ROOT / package / "__init__.py").exists() or any((ROOT / package).glob("*.py")), f"{package}/ missing"
    problems = layer_violations(package, FORBIDDEN[package])
    assert not problems, f"{package} must not import {sorted(FORBIDDEN[package])}:\n" + "\n".join(problems)


def test_testing_module_imports_no_pytest():
    """Users import agent.testing and eval.testing in any test runner (or none)."""
    for path in (ROOT / "agent" / "testing.py", *sorted((ROOT / "agent" / "scripted").glob("*.py")),
                 ROOT / "eval" / "testing.py"):
        names = [name for _, name in imported_modules(path)]
        assert not [n for n in names if n.split(".")[0] in ("pytest", "_pytest")], path


def test_bench_scripts_do_not_import_tests_or_edit_sys_path():
    for path in sorted((ROOT / "bench").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        assert "sys.path" not in source, f"{path.name} edits sys.path"
        names = {name.split(".")[0] for _, name in imported_modules(path)}
        assert not names & {"conftest", "eval_fixtures", "video_fixtures", "tests"}, f"{path.name} imports tests/"


def test_the_checker_sees_function_level_relative_and_dynamic_imports(tmp_path, monkeypatch):
    """The checker itself: imports hidden in functions and dynamic ones are caught, relative ones resolved."""
    fake = tmp_path / "tools"
    (fake / "inner").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "inner" / "__init__.py").write_text("")
    (fake / "inner" / "bad.py").write_text(
        "import json\n"
        "def later():\n    from serving.http import app\n"
        "def relative():\n    from .. import registry\n"
        "def dynamic():\n    import importlib\n    return importlib.import_module('fastapi')\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    problems = layer_violations("tools", FORBIDDEN["tools"])
    assert [p.split(" imports ")[1] for p in problems] == ["serving.http", "serving.http.app", "fastapi"]
    names = [name for _, name in imported_modules(fake / "inner" / "bad.py")]
    assert "tools.registry" in names  # ``from .. import registry`` in tools/inner/ resolved to its package
