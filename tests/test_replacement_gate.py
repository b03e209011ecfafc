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
        # the digest's shape for a Kubernetes provider replaced because its kubeconfig changed (dns <-> ip
        # access, a new CA or endpoint): every object it manages would be replaced after it
        ("provider-replace-kubeconfig.json", "providers:kubernetes::llm-prod-k8s", "replace", "kubeconfig",
         "replacing a provider"),
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


def test_replace_paths_come_from_detailed_diff():
    (finding,) = gate.check(load("nodepool-replace-machine-type.json"))
    assert finding.replace_paths == ("nodeConfig.machineType",)
    assert "replaced by changes to: nodeConfig.machineType" in str(finding)


def test_replacement_steps_report_the_cluster_once():
    findings = gate.check(load("cluster-replace-steps.json"))
    assert [f.op for f in findings] == ["create-replacement"], findings
    assert findings[0].reasons == ("location",)


def test_unprotected_replace_of_other_resources_passes():
    doc = load("protected-release-replace.json")
    for step in doc["steps"]:
        if step["op"] == "replace":
            step["oldState"]["protect"] = step["newState"]["protect"] = False
    assert gate.check(doc) == []


def test_protect_only_in_new_state_still_counts():
    doc = load("protected-release-replace.json")
    for step in doc["steps"]:
        if step["op"] == "replace":
            step["oldState"].pop("protect", None)
    assert [f.op for f in gate.check(doc)] == ["replace"]


def with_allow_replacement(doc, value):
    cluster = json.loads(doc["config"]["llm-platform:cluster"])
    cluster["allowReplacement"] = value
    doc["config"]["llm-platform:cluster"] = json.dumps(cluster)
    return doc


@pytest.mark.parametrize("name", ["cluster-replace-datapath.json", "nodepool-replace-machine-type.json", "cluster-delete.json"])
def test_allow_replacement_turns_cluster_findings_into_allowed(name):
    doc = with_allow_replacement(load(name), True)
    findings = gate.check(doc)
    assert findings and all(f.allowed for f in findings), findings
    assert gate.blocking(findings) == []
    assert gate.main(["-"], stdin=io.StringIO(json.dumps(doc))) == 0


def test_allow_replacement_does_not_cover_other_protected_resources():
    doc = with_allow_replacement(load("protected-release-replace.json"), True)
    assert [f.urn.split("::")[-1] for f in gate.blocking(gate.check(doc))] == ["kyverno"]


@pytest.mark.parametrize("value", ["[secret]", "not json", json.dumps({"allowReplacement": "true"}), None])
def test_allow_replacement_must_be_a_literal_true(value):
    doc = load("cluster-replace-datapath.json")
    if value is None:
        del doc["config"]["llm-platform:cluster"]
    else:
        doc["config"]["llm-platform:cluster"] = value
    assert not gate.allow_replacement(doc)
    assert len(gate.blocking(gate.check(doc))) == 1


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
    urn = "urn:pulumi:prod::llm-platform::llm-platform:cluster:GkeCluster$gcp:container/cluster:Cluster::llm-prod"
    assert f"BLOCKED replace {urn}" in result.stdout
    assert "reasons: datapathProvider" in result.stdout and "allowReplacement: true" in result.stdout
    assert "replacing the GKE cluster" in result.stdout


@pytest.mark.parametrize("name", ["nodepool-replace-machine-type.json", "cluster-delete.json", "protected-release-replace.json"])
def test_cli_fails_every_dangerous_fixture(name):
    result = run_cli(str(FIXTURES / name))
    assert result.returncode == 1 and "BLOCKED" in result.stdout and "FAILED" in result.stdout, result.stdout


def test_cli_reports_allowed_replacement_and_passes(tmp_path):
    doc = with_allow_replacement(load("cluster-replace-datapath.json"), True)
    path = tmp_path / "preview.json"
    path.write_text(json.dumps(doc))
    result = run_cli(str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ALLOWED (cluster.allowReplacement: true) replace" in result.stdout and "replacement gate: OK" in result.stdout


def test_cli_passes_safe_preview_from_stdin():
    result = run_cli("-", stdin=(FIXTURES / "nodepool-autoscaling-update.json").read_text())
    assert result.returncode == 0 and result.stdout.startswith("replacement gate: OK"), result.stdout + result.stderr


def test_cli_rejects_garbage():
    result = run_cli("-", stdin="Previewing update (prod):\n")
    assert result.returncode == 2 and "cannot read the preview" in result.stderr


def test_cli_rejects_missing_file_and_wrong_usage(tmp_path):
    result = run_cli(str(tmp_path / "absent.json"))
    assert result.returncode == 2 and "absent.json" in result.stderr
    assert run_cli().returncode == 2
    empty = run_cli("-", stdin="")
    assert empty.returncode == 2 and "did the preview itself fail" in empty.stderr


def test_main_reads_stdin_argument():
    assert gate.main(["-"], stdin=io.StringIO(json.dumps(load("cluster-delete.json")))) == 1
