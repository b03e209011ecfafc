"""Agent isolation admission: the ClusterPolicy agent-runtime-isolation.

Every kyverno-test.yaml case below the policy folder is evaluated with real CEL (cel-expr-python)
by tests/kyverno_cel.py; the rendered policy (scoped to the stack's agent namespaces, with its
failure action) is validated against the vendored ClusterPolicy CRD schema of Kyverno v1.18.1.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

from components import yaml_io

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import kyverno_cel  # noqa: E402

from components import workload_isolation as wi  # noqa: E402
from components.config import AgentIsolationConfig  # noqa: E402
from tests import kyverno_chart  # noqa: E402

POLICY_DIR = ROOT / "policies" / "kyverno" / "agent-runtime-isolation"
CRD = ROOT / "vendor" / "kyverno" / "3.8.1" / "crds" / "kyverno.io_clusterpolicies.yaml"
RULES = {"require-gvisor-runtime", "no-service-account-token-without-reason", "no-host-path", "no-privileged-containers",
         "no-host-namespaces", "no-host-ports", "no-added-capabilities"}


def _cases():
    params = []
    for test_file in kyverno_cel.discover_test_files(POLICY_DIR):
        suite = kyverno_cel.load_suite(test_file)
        for case in suite.cases:
            params.append(pytest.param(suite, case, id=f"{case.kind}/{case.resource}:{case.rule}:{case.expected}"))
    return params


CASES = _cases()


def test_every_rule_has_pass_fail_and_skip_cases():
    seen = {(p.values[1].rule, p.values[1].expected) for p in CASES}
    for rule in RULES:
        assert {(rule, "pass"), (rule, "fail")} <= seen, f"agent-runtime-isolation/{rule}: needs pass and fail cases"
    assert {r for r, e in seen if e == "skip"} >= {"require-gvisor-runtime", "no-privileged-containers",
                                                    "no-host-namespaces", "no-host-ports", "no-added-capabilities"}


@pytest.mark.parametrize("suite,case", CASES)
def test_kyverno_case(suite, case):
    outcome = kyverno_cel.evaluate_case(suite, case)
    assert outcome.result == case.expected, (
        f"agent-runtime-isolation/{case.rule}: Pod {case.resource} expected {case.expected}, got {outcome.result}: {outcome.message}"
    )


def _policy(namespaces=("agents", "code-runners"), action="Audit"):
    return wi.agent_admission_policy(AgentIsolationConfig(enabled=True, namespaces=list(namespaces)), action)


def test_rendered_policy_is_scoped_to_the_configured_namespaces():
    policy = _policy()
    assert {r["name"] for r in policy["spec"]["rules"]} == RULES
    for rule in policy["spec"]["rules"]:
        (flt,) = rule["match"]["any"]
        assert flt["resources"]["namespaces"] == ["agents", "code-runners"], rule["name"]
        assert flt["resources"]["kinds"] == ["Pod", "Pod/ephemeralcontainers"] and set(flt["resources"]["operations"]) == {"CREATE", "UPDATE"}
    assert policy["spec"]["validationFailureAction"] == "Audit"
    assert _policy(action="Enforce")["spec"]["validationFailureAction"] == "Enforce"
    assert policy["spec"]["webhookConfiguration"]["failurePolicy"] == "Fail"


def test_rendered_policy_still_evaluates(tmp_path):
    # The scoped policy (not only the file) refuses a runc Pod in a configured namespace and skips others.
    rule = next(r for r in _policy()["spec"]["rules"] if r["name"] == "require-gvisor-runtime")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "code-runners"},
           "spec": {"containers": [{"name": "c", "image": "i"}]}}
    assert kyverno_cel.evaluate_rule(rule, pod, "CREATE", "alice", [], {}).result == "fail"
    pod["metadata"]["namespace"] = "team-a"
    assert kyverno_cel.evaluate_rule(rule, pod, "CREATE", "alice", [], {}).result == "skip"


def test_every_cel_expression_compiles():
    count = 0
    for rule in _policy()["spec"]["rules"]:
        cel_block = rule["validate"]["cel"]
        for item in cel_block.get("variables", []) + cel_block["expressions"]:
            kyverno_cel.compile_expr(item["expression"])
            count += 1
    assert count >= 10


@pytest.fixture(scope="module")
def schema():
    crd = kyverno_chart.parsed(CRD)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def _errors(schema, doc):
    import jsonschema

    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]


def test_policy_matches_the_clusterpolicy_crd_schema(schema):
    errors = _errors(schema, _policy())
    assert not errors, "\n".join(errors)


def test_schema_check_detects_errors(schema):
    broken = copy.deepcopy(_policy())
    broken["spec"]["webhookConfiguration"]["failurePolicy"] = "Sometimes"
    assert any("failurePolicy" in e for e in _errors(schema, broken))


def test_policy_follows_the_folder_layout():
    assert (POLICY_DIR / "agent-runtime-isolation.yaml") == wi.AGENT_POLICY_FILE
    policy = yaml_io.load(wi.AGENT_POLICY_FILE.read_text())
    ann = policy["metadata"]["annotations"]
    for key in ("policies.kyverno.io/title", "policies.kyverno.io/category", "policies.kyverno.io/severity",
                "policies.kyverno.io/description", kyverno_cel.AUTOGEN_ANNOTATION):
        assert ann.get(key), f"agent-runtime-isolation: annotation {key} missing"
    kyverno_cel.check_policy_supported(policy)


def test_webhook_is_scoped_to_the_agent_namespaces():
    policy = _policy()
    (cond,) = policy["spec"]["webhookConfiguration"]["matchConditions"]
    assert cond == {"name": "agent-namespace", "expression": "request.namespace in ['agents', 'code-runners']"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "code-runners"},
           "spec": {"containers": [{"name": "c", "image": "i"}]}}
    assert kyverno_cel.webhook_matches(policy, pod, "CREATE"), "agent namespace: Kyverno is called"
    pod["metadata"]["namespace"] = "team-a"
    assert not kyverno_cel.webhook_matches(policy, pod, "CREATE"), "other namespaces: Kyverno is never called"


def test_privileged_ephemeral_container_via_kubectl_debug_is_refused():
    rule = next(r for r in _policy()["spec"]["rules"] if r["name"] == "no-privileged-containers")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "agents"},
           "spec": {"runtimeClassName": "gvisor", "automountServiceAccountToken": False,
                    "containers": [{"name": "c", "image": "i"}],
                    "ephemeralContainers": [{"name": "debugger", "image": "busybox", "securityContext": {"privileged": True}}]}}
    old = {**pod, "spec": {k: v for k, v in pod["spec"].items() if k != "ephemeralContainers"}}
    out = kyverno_cel.evaluate_rule(rule, pod, "UPDATE", "alice", [], {}, old=old, subresource="ephemeralcontainers")
    assert out.result == "fail", f"no-privileged-containers: kubectl debug --privileged must be refused, got {out.result}"
    pod["spec"]["ephemeralContainers"][0]["securityContext"]["privileged"] = False
    out = kyverno_cel.evaluate_rule(rule, pod, "UPDATE", "alice", [], {}, old=old, subresource="ephemeralcontainers")
    assert out.result == "pass", out.message
