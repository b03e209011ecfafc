"""CrossGuard guardrails: each validator on passing and failing inputs, and on the real program."""

import ast
import pathlib
import sys

import pytest

PACK = pathlib.Path(__file__).resolve().parent.parent / "policies" / "crossguard"
sys.path.insert(0, str(PACK))
import guardrails  # noqa: E402
from guardrails import Resource  # noqa: E402

from tools import mockrun  # noqa: E402

CLUSTER_OK = {"datapathProvider": "ADVANCED_DATAPATH", "addonsConfig": {}}
DENY = {"metadata": {"name": "default-deny-ingress", "namespace": "serving"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
ALLOW = {"metadata": {"name": "allow-model-server", "namespace": "serving"},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"namespaceSelector": {}}]}]}}
SECURITY = Resource("llm-platform:security:Security", "security", {})


@pytest.mark.parametrize(
    "props,violates",
    [
        (CLUSTER_OK, False),
        ({**CLUSTER_OK, "addonsConfig": {"networkPolicyConfig": {"disabled": True}}}, False),
        ({**CLUSTER_OK, "addonsConfig": {"networkPolicyConfig": {"disabled": False}}}, True),
        ({**CLUSTER_OK, "networkPolicy": {"enabled": True, "provider": "CALICO"}}, True),
    ],
    ids=["no-addon", "addon-disabled", "addon-enabled", "legacy-network-policy"],
)
def test_legacy_network_policy_addon(props, violates):
    messages = guardrails.legacy_network_policy_addon("c1", props)
    assert bool(messages) == violates, messages
    if violates:
        assert "cluster c1" in messages[0] and "remove it" in messages[0]


@pytest.mark.parametrize(
    "version,violates",
    [("3.8.1", False), ("3.8.1-rc.1", False), ("", True), (None, True), ("^3.8", True), ("3.x", True),
     (">=3.8.0", True), ("*", True), ("latest", True), ("v3.8.1", True), ("3.8", True)],
)
@pytest.mark.parametrize("typ", guardrails.HELM_TYPES)
def test_kyverno_must_be_pinned(typ, version, violates):
    messages = guardrails.unpinned_kyverno(typ, "kyverno", {"chart": "kyverno", "version": version})
    assert bool(messages) == violates, f"{typ} version {version!r}: {messages}"
    if violates:
        assert "kyverno" in messages[0] and "pin it" in messages[0]


def test_other_charts_are_not_judged():
    assert guardrails.unpinned_kyverno(guardrails.HELM_TYPES[0], "x", {"chart": "kueue", "version": "^1"}) == []


def test_security_requires_dataplane_v2():
    legacy = Resource(guardrails.CLUSTER, "c1", {"datapathProvider": "LEGACY_DATAPATH"})
    unset = Resource(guardrails.CLUSTER, "c2", {})
    messages = guardrails.security_without_dataplane_v2([SECURITY, legacy, unset])
    assert len(messages) == 2 and "cluster c1" in messages[0] and "authored but not enforced" in messages[0]
    assert guardrails.security_without_dataplane_v2([legacy]) == [], "without the security group there is nothing to enforce"
    assert guardrails.security_without_dataplane_v2([SECURITY, Resource(guardrails.CLUSTER, "ok", CLUSTER_OK)]) == []


def test_network_policies_need_default_deny():
    allow = Resource(guardrails.NETWORK_POLICY, "serving-allow", ALLOW)
    deny = Resource(guardrails.NETWORK_POLICY, "serving-deny", DENY)
    assert guardrails.missing_default_deny([allow, deny]) == []
    messages = guardrails.missing_default_deny([allow])
    assert len(messages) == 1 and "namespace serving" in messages[0]
    selective = {**DENY, "spec": {"podSelector": {"matchLabels": {"app": "x"}}, "policyTypes": ["Ingress"]}}
    assert guardrails.missing_default_deny([allow, Resource(guardrails.NETWORK_POLICY, "d", selective)]), \
        "a deny that selects only some pods is not a default-deny"
    other = {**ALLOW, "metadata": {"name": "a", "namespace": "team-a"}}
    assert guardrails.missing_default_deny([Resource(guardrails.NETWORK_POLICY, "t", other)]) == [], "only serving/inference are guarded"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_program_passes_every_guardrail(stack):
    resources = [Resource(r.type, r.name, r.inputs) for r in mockrun.run_stack(stack)]
    problems = guardrails.security_without_dataplane_v2(resources) + guardrails.missing_default_deny(resources)
    for r in resources:
        problems += guardrails.unpinned_kyverno(r.type, r.name, r.props)
        if r.type == guardrails.CLUSTER:
            problems += guardrails.legacy_network_policy_addon(r.name, r.props)
    assert problems == [], f"{stack}: the program violates its own guardrails: {problems}"
    assert any(r.type == guardrails.NETWORK_POLICY for r in resources), "the check must see the NetworkPolicies"


def test_pack_wires_every_validator_as_mandatory():
    tree = ast.parse((PACK / "__main__.py").read_text())
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "guardrails"}
    rules = {"legacy_network_policy_addon", "unpinned_kyverno", "security_without_dataplane_v2", "missing_default_deny"}
    assert rules <= used, f"validators not wired into the pack: {rules - used}"
    source = (PACK / "__main__.py").read_text()
    assert "EnforcementLevel.MANDATORY" in source
    assert "runtime:" in (PACK / "PulumiPolicy.yaml").read_text()
