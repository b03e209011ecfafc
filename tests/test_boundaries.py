"""Module boundaries a reader of the import graph relies on."""

import ast
import pathlib
import re

from tools import mockrun

ROOT = mockrun.ROOT


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_sr2_and_security_do_not_import_the_gke_cluster_component():
    for name in ("kyverno.py", "security.py"):
        mods = imported_modules(ROOT / "components" / name)
        assert "components.cluster" not in mods, f"components/{name} imports cluster.py: use components.cluster_access"
        assert "components.cluster_access" in mods, f"components/{name}: ClusterAccess comes from cluster_access.py"


def test_tools_read_no_test_fixtures():
    """A tool must work from a checkout without tests/: no path into tests/ in tools' code (docstrings aside)."""
    offenders = []
    for path in sorted((ROOT / "tools").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if re.search(r"(^|/)tests(/|$)", node.value):
                    offenders.append(f"{path.name}:{node.lineno}: {node.value!r}")
        for mod in imported_modules(path):
            if mod == "tests" or mod.startswith("tests."):
                offenders.append(f"{path.name}: imports {mod}")
    assert offenders == [], f"tools reach into tests/: {offenders}"


def test_render_detects_the_programs_error_by_class():
    source = (ROOT / "tools" / "render.py").read_text(encoding="utf-8")
    assert "__name__ == \"RunError\"" not in source and "except pulumi.RunError" in source, (
        "tools/render.py must catch pulumi.RunError by class, not compare class names as strings"
    )
