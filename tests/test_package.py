"""The package's public surface and import-time behaviour."""

import ast
import importlib
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import reactive_celery


def test_package_imports_before_settings_are_configured():
    code = (
        "import sys, reactive_celery; "
        "assert 'django.conf' not in sys.modules and 'celery' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('django', 'celery')))"
    )
    env = {"PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_lazy_exports_resolve():
    from reactive_celery.decorators import reactive
    from reactive_celery.signals import notify

    assert reactive_celery.reactive is reactive
    assert reactive_celery.notify is notify


def _modules() -> list[str]:
    names = [
        info.name
        for info in pkgutil.walk_packages(reactive_celery.__path__, "reactive_celery.")
        if ".migrations" not in info.name and info.name != "reactive_celery.sweep"
    ]
    return ["reactive_celery", *names]


def _public_names(module) -> set[str]:
    """Names a module defines (or, for a package, re-exports) that do not start with _."""
    tree = ast.parse(Path(module.__file__).read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            # Loggers are configured by name, never imported.
            if isinstance(value, ast.Call) and getattr(value.func, "attr", "") == "getLogger":
                continue
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom) and module.__file__.endswith("__init__.py"):
            if node.level:  # a package re-exporting its own modules' names
                names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.If) and module.__name__ == "reactive_celery":
            # The TYPE_CHECKING imports of the names that load lazily.
            for inner in node.body:
                names.update(alias.name for alias in getattr(inner, "names", []))
    return {name for name in names if not name.startswith("_")}


@pytest.mark.parametrize("name", _modules())
def test_all_is_exactly_the_public_names(name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), name
    assert set(module.__all__) - {"__version__"} == _public_names(module)
    assert len(module.__all__) == len(set(module.__all__))
    for exported in module.__all__:
        assert hasattr(module, exported), f"{name}.{exported}"


def test_the_old_sweep_path_still_imports_with_a_warning():
    sys.modules.pop("reactive_celery.sweep", None)
    with pytest.warns(DeprecationWarning, match="reactive_celery.store.sweep"):
        old = importlib.import_module("reactive_celery.sweep")
    from reactive_celery.store.sweep import sweep

    assert old.__all__ == ["sweep"] and old.sweep is sweep


#: Modules tested under another name: the package's face, the deprecated alias,
#: the management commands (one file for both) and the URL modules with their views.
_TESTED_ELSEWHERE = {
    "reactive_celery": "test_package.py",
    "reactive_celery.sweep": "test_package.py",
    "reactive_celery.urls": "test_views.py",
    "reactive_celery.management.commands.reactive_clear": "test_commands.py",
    "reactive_celery.management.commands.reactive_status": "test_commands.py",
    "reactive_celery.management.commands.reactive_listen": "pg/test_listener.py",
    "reactive_celery.management.commands.reactive_triggers": "pg/test_triggers.py",
}


@pytest.mark.parametrize("name", [*_modules(), "reactive_celery.sweep"])
def test_every_module_has_a_test_module_named_after_it(name):
    tests = Path(__file__).parent
    if name in _TESTED_ELSEWHERE:
        assert (tests / _TESTED_ELSEWHERE[name]).exists()
        return
    parts = name.split(".")[1:]
    if Path(importlib.util.find_spec(name).origin).name == "__init__.py":
        return  # a package's __init__ holds names, not behaviour
    expected = tests.joinpath(*parts[:-1], f"test_{parts[-1]}.py")
    assert expected.exists(), f"{name} has no {expected.relative_to(tests.parent)}"


def _package_imports(name: str) -> tuple[set[str], list[int]]:
    """The package modules ``name`` imports at its top level, and lines importing in functions."""
    module_file = Path(importlib.util.find_spec(name).origin)
    tree = ast.parse(module_file.read_text())
    package = name if module_file.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets: set[str] = set()
    nested: list[int] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if (
            node not in tree.body
            and not _under_type_checking(tree, node)
            and not _optional_at_top(tree, node)
        ):
            nested.append(node.lineno)
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            stem = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                full = f"{stem}.{alias.name}"
                targets.add(full if importlib.util.find_spec(stem) and _is_module(full) else stem)
    return {t for t in targets if t != name}, nested


def _under_type_checking(tree: ast.Module, node: ast.AST) -> bool:
    return any(
        isinstance(top, ast.If)
        and node in ast.walk(top)
        and "TYPE_CHECKING" in ast.unparse(top.test)
        for top in tree.body
    )


def _optional_at_top(tree: ast.Module, node: ast.AST) -> bool:
    """An import in a top-level ``try: ... except ImportError``: an optional dependency."""
    return any(
        isinstance(top, ast.Try)
        and node in top.body
        and any("ImportError" in ast.unparse(h.type or ast.Name("")) for h in top.handlers)
        for top in tree.body
    )


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def test_the_package_has_no_import_cycles_and_imports_at_the_top():
    graph = {}
    for name in _modules():
        imports, nested = _package_imports(name)
        graph[name] = imports
        # Only AppConfig.ready() and the package's lazy __getattr__ import late.
        allowed = name in ("reactive_celery", "reactive_celery.apps")
        assert allowed or not nested, f"{name} imports inside functions at lines {nested}"
    seen: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if seen.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join([*path, node]))
        if seen.get(node) == 2:
            return
        seen[node] = 1
        for target in graph.get(node, ()):
            if target in graph and not (node == "reactive_celery" or target == "reactive_celery"):
                visit(target, [*path, node])
        seen[node] = 2

    for name in graph:
        visit(name, [])
