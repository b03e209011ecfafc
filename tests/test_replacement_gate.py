"""Replacement gate on recorded `pulumi preview --json` fixtures (tests/fixtures/preview/)."""

import io
import json
import pathlib
import subprocess
import sys

import pytest

from tools import replacement_gate as gate

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "preview"
ROOT = pathlib.Path(__file__).resolve().parent.parent


def load(name):
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize("name", ["no-changes.json", "nodepool-autoscaling-update.json", "networkpolicy-create.json"])
def test_safe_previews_pass(name):
    assert gate.check(load(name)) == [], f"{name}: nothing dangerous, the gate must pass"


@pytest.mark.parametrize(
    "name,urn_end,op,reason,why",
    [
        ("cluster-replace-datapath.json", "Cluster::llm-prod", "replace", "datapathProvider", "replacing the GKE cluster"),
        ("nodepool-replace-machine-type.json", "NodePool::llm-prod-gpu-l4", "replace", "nodeConfig", "replacing a node pool"),
        ("cluster-delete.json", "Cluster::llm-prod", "delete", None, "deleting the GKE cluster"),
        ("protected-release-replace.json", "Release::kyverno", "replace", "name", "marked protected"),
    ],
)
def test_dangerous_previews_are_blocked(name, urn_end, op, reason, why):
    findings = gate.check(load(name))
    assert len(findings) == 1, f"{name}: expected one blocked step, got {findings}"
    f = findings[0]
    assert f.urn.endswith(urn_end) and f.op == op
    assert why in f.why, f"{name}: why must say {why!r}, got {f.why!r}"
    if reason:
        assert reason in f.reasons, f"{name}: reasons must include {reason}, got {f.reasons}"


def test_replacement_steps_report_the_cluster_once():
    findings = gate.check(load("cluster-replace-steps.json"))
    assert [f.op for f in findings] == ["create-replacement"], findings
    assert findings[0].reasons == ("location",)


def test_unprotected_replace_of_other_resources_passes():
    doc = load("protected-release-replace.json")
    for step in doc["steps"]:
        if step["op"] == "replace":
            step["oldState"]["protect"] = False
    assert gate.check(doc) == []


@pytest.mark.parametrize("bad", [[], {"steps": "x"}, {"steps": [{"urn": "u"}]}], ids=["list", "steps-not-list", "step-without-op"])
def test_invalid_documents_are_errors(bad):
    with pytest.raises(gate.GateInputError):
        gate.check(bad)


def run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "tools.replacement_gate", *args], cwd=ROOT,
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_cli_blocks_with_urn_reason_and_the_way_forward():
    result = run_cli(str(FIXTURES / "cluster-replace-datapath.json"))
    assert result.returncode == 1
    assert "BLOCKED replace urn:pulumi:prod::llm-platform::" in result.stdout
    assert "datapathProvider" in result.stdout and "allowReplacement: true" in result.stdout


def test_cli_passes_safe_preview_from_stdin():
    result = run_cli("-", stdin=(FIXTURES / "nodepool-autoscaling-update.json").read_text())
    assert result.returncode == 0 and result.stdout.startswith("replacement gate: OK"), result.stdout + result.stderr


def test_cli_rejects_garbage():
    result = run_cli("-", stdin="Previewing update (prod):\n")
    assert result.returncode == 2 and "cannot read the preview" in result.stderr


def test_main_reads_stdin_argument():
    assert gate.main(["-"], stdin=io.StringIO(json.dumps(load("cluster-delete.json")))) == 1
