"""Where the tests find the Kyverno chart 3.8.1 data (values.yaml, Chart.yaml, crds/).

Default: what the project vendors under vendor/kyverno/3.8.1/ (so a fresh clone runs every test).
`KYVERNO_CHART_DIR` overrides it. The upstream copy (`KYVERNO_CHART_DIR`, else ../shared/kyverno/3.8.1)
is only needed to prove the vendored files are upstream's bytes.
"""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Any

import pytest

from components import yaml_io

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENDORED = ROOT / "vendor" / "kyverno" / "3.8.1"
HOW_TO_GET = (
    "fetch them with `helm pull kyverno --repo https://kyverno.github.io/kyverno/ --version 3.8.1 --untar` "
    "(values.yaml, Chart.yaml) and the CRDs from github.com/kyverno/kyverno tag v1.18.1, config/crds/**"
)


def chart_dir() -> pathlib.Path:
    """The chart data the tests read: $KYVERNO_CHART_DIR, else the vendored copy."""
    value = os.environ.get("KYVERNO_CHART_DIR")
    path = pathlib.Path(value) if value else VENDORED
    missing = [n for n in ("values.yaml", "Chart.yaml", "crds") if not (path / n).exists()]
    if missing and value:
        pytest.fail(f"KYVERNO_CHART_DIR={value} lacks {', '.join(missing)}; {HOW_TO_GET}")
    if missing:
        pytest.skip(f"Kyverno chart 3.8.1 data not at {path} (missing {', '.join(missing)}): restore "
                    f"vendor/kyverno/3.8.1 from git or set KYVERNO_CHART_DIR; {HOW_TO_GET}")
    return path


@functools.cache
def parsed(path: pathlib.Path) -> Any:
    """A chart file (the ClusterPolicy CRD is 1.4 MB of YAML), parsed once per test process and shared by every
    test that reads it: read-only, copy before changing it."""
    return yaml_io.load(path.read_text(encoding="utf-8"))


def upstream_dir() -> pathlib.Path:
    """Upstream chart data to compare the vendored copy with: $KYVERNO_CHART_DIR, else ../shared/kyverno/3.8.1."""
    value = os.environ.get("KYVERNO_CHART_DIR")
    path = pathlib.Path(value) if value else ROOT.parent / "shared" / "kyverno" / "3.8.1"
    if path.resolve() == VENDORED.resolve() or not (path / "values.yaml").is_file():
        pytest.skip(f"no upstream Kyverno chart 3.8.1 data at {path} to compare the vendored copy with: "
                    f"set KYVERNO_CHART_DIR or place it at ../shared/kyverno/3.8.1; {HOW_TO_GET}")
    return path
