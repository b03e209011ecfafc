"""The linters are in the loop: `make test` runs `make lint` (ruff, mypy) first, and ruff is also run here,
so a lint error fails the suite too. Rule sets: pyproject.toml."""

import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from tools import mockrun

ROOT = mockrun.ROOT


def ruff(*args, cwd=ROOT):
    """ruff from this interpreter's environment (requirements-dev.txt pins it)."""
    exe = shutil.which("ruff", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed: pip install -r requirements-dev.txt")
    return subprocess.run([exe, "check", "--no-cache", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_code_base_is_ruff_clean():
    result = ruff(".")
    assert result.returncode == 0, f"ruff finds problems (rules in pyproject.toml):\n{result.stdout}{result.stderr}"


def test_a_deliberate_lint_error_fails(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\n\ndef f():\n    return 1\n")
    result = ruff("--config", str(ROOT / "pyproject.toml"), str(bad), cwd=tmp_path)
    assert result.returncode != 0, "ruff must fail on an unused import (F401)"
    assert "F401" in result.stdout, result.stdout


def test_make_test_runs_the_linters_first():
    makefile = (ROOT / "Makefile").read_text()
    test_deps = re.search(r"^test:(.*)$", makefile, re.M)
    assert test_deps and "lint" in test_deps.group(1).split(), "`make test` must depend on `make lint`"
    lint = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert lint, "Makefile has a lint target"
    assert "ruff check" in lint.group(1) and "mypy" in lint.group(1), "lint runs ruff and mypy"
