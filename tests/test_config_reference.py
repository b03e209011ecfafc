"""docs/config.md is generated from the config models (tools/config_reference.py) and cannot go stale."""

from __future__ import annotations

import pathlib
from typing import Any, Optional

import pytest
import yaml

from components import config
from tools import config_reference

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_committed_reference_is_what_the_models_generate():
    committed = config_reference.OUT.read_text(encoding="utf-8")
    assert committed == config_reference.render(), (
        "docs/config.md is stale: run `.venv/bin/python -m tools.config_reference` and commit the result"
    )
    assert config_reference.main(["--check"]) == 0


def test_check_fails_on_a_stale_file(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "config.md"
    stale.write_text(config_reference.render().replace("| `llm-platform:security` | bool | `false` |",
                                                       "| `llm-platform:security` | bool | `true` |"))
    monkeypatch.setattr(config_reference, "OUT", stale)
    monkeypatch.setattr(config_reference, "ROOT", tmp_path)
    assert config_reference.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err


def test_every_field_has_a_docstring():
    assert config_reference.missing_descriptions() == []


def test_a_field_without_docstring_is_reported():
    class Documented(config._Model):
        """A model for this test."""

        kept: int = 1
        """Has a docstring."""
        bare: int = 2

    class Outer(config._Model):
        inner: Documented = Documented()
        """Nested."""

    assert config_reference.missing_descriptions(Outer) == ["llm-platform:inner.bare"]


def _rows() -> dict[str, tuple[str, str, str]]:
    return {path: (kind, default, description) for path, kind, default, description
            in config_reference.rows(config.StackConfig)}


def _stack_paths(value: Any, path: str, rows: dict[str, tuple[str, str, str]]) -> list[str]:
    """Every key path a stack file sets, stopping at map-typed keys (their keys are data, not config keys)."""
    out = [path]
    if rows.get(path, ("",))[0].startswith("map of"):
        return out
    if isinstance(value, dict):
        for key, sub in value.items():
            out += _stack_paths(sub, f"{path}.{key}", rows)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                for key, sub in item.items():
                    out += _stack_paths(sub, f"{path}[].{key}", rows)
    return out


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_key_a_stack_sets_is_documented(stack):
    rows = _rows()
    stack_config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    paths = [p for key, value in stack_config.items() for p in _stack_paths(value, key, rows)]
    assert len(paths) > 30
    missing = [p for p in paths if p not in rows]
    assert missing == [], f"Pulumi.{stack}.yaml sets keys docs/config.md does not list: {missing}"


def _row(path: str) -> Optional[tuple[str, str, str]]:
    return _rows().get(path)


def test_types_defaults_and_bounds_come_from_the_models():
    assert _row("llm-platform:cluster.nodePools[].gpu.count") == (
        "int (≥ 1, ≤ 16)", "required", "GPUs per node (1-16).")
    kind, default, _ = _row("llm-platform:kyverno.failureAction")
    assert (kind, default) == ("`Enforce` \\| `Audit`", "`Enforce`")
    assert _row("llm-platform:networkPolicy.protectedNamespaces")[1] == (
        "`" + str(list(config.NetworkPolicyConfig().protected_namespaces)).replace("'", '"') + "`")
    assert _row("llm-platform:networkPolicy.ports")[0] == "map of string → list of int"
    assert _row("gcp:project")[1] == "unset"


def test_unknown_key_error_points_to_the_reference():
    with pytest.raises(config.ConfigError) as err:
        config.parse({"llm-platform:securty": "true"}, "dev")
    assert "docs/config.md" in str(err.value)
    assert config_reference.OUT.relative_to(ROOT).as_posix() == "docs/config.md"
