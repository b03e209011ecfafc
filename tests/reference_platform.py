"""Where the tests find the reference platform's manifests (../shared/reference-platform by default)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT.parent / "shared" / "reference-platform"


def reference_dir(needs: str = "serving") -> Path:
    """The reference platform checkout (``$REFERENCE_PLATFORM_DIR``, default ``../shared/reference-platform``);
    skips, saying how to get it, when its ``needs`` folder is absent."""
    value = os.environ.get("REFERENCE_PLATFORM_DIR")
    path = Path(value) if value else DEFAULT
    if not (path / needs).is_dir():
        pytest.skip(
            f"reference platform manifests not found at {path}: set REFERENCE_PLATFORM_DIR to a checkout of "
            "github.com/ahmedwaleedmalik/k8s-llm-inference-platform (commit 441dd0a) or place it at "
            "../shared/reference-platform"
        )
    return path
