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


def test_security_is_detected_from_a_child_urn():
    """Even if a stack validation saw no component resources, a child's URN names its security parent."""
    np_urn = ("urn:pulumi:prod::llm-platform::llm-platform:security:Security$llm-platform:security:NetworkPolicies"
              "$kubernetes:networking.k8s.io/v1:NetworkPolicy::serving-default-deny-ingress")
    child = Resource(guardrails.NETWORK_POLICY, "serving-default-deny-ingress", DENY, np_urn)
    legacy = Resource(guardrails.CLUSTER, "c1", {"datapathProvider": "LEGACY_DATAPATH"},
                      "urn:pulumi:prod::llm-platform::llm-platform:cluster:GkeCluster$gcp:container/cluster:Cluster::c1")
    assert guardrails.security_enabled([child]) and not guardrails.security_enabled([legacy])
    assert len(guardrails.security_without_dataplane_v2([child, legacy])) == 1


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
    resources = [Resource(r.type, r.name, r.inputs, r.urn) for r in mockrun.run_stack(stack)]
    assert guardrails.security_enabled(resources), f"{stack} turns security on: rule (a) must be armed"
    problems = guardrails.security_without_dataplane_v2(resources) + guardrails.missing_default_deny(resources)
    for r in resources:
        problems += guardrails.unpinned_kyverno(r.type, r.name, r.props)
        if r.type == guardrails.CLUSTER:
            problems += guardrails.legacy_network_policy_addon(r.name, r.props)
    assert problems == [], f"{stack}: the program violates its own guardrails: {problems}"
    assert any(r.type == guardrails.NETWORK_POLICY for r in resources), "the check must see the NetworkPolicies"


def test_validators_accept_the_engines_proxied_props():
    """The engine hands policies read-only Mapping/Sequence proxies, not dicts and lists."""
    from pulumi_policy.proxy import unknown_checking_proxy as proxy

    assert guardrails.legacy_network_policy_addon("c1", proxy({"addonsConfig": {"networkPolicyConfig": {"disabled": False}}}))
    assert guardrails.legacy_network_policy_addon("c1", proxy(CLUSTER_OK)) == []
    assert guardrails.unpinned_kyverno(guardrails.HELM_TYPES[0], "k", proxy({"chart": "kyverno", "version": "3.x"}))
    assert guardrails.unpinned_kyverno(guardrails.HELM_TYPES[0], "k", proxy({"chart": "kyverno", "version": "3.8.1"})) == []
    allow = Resource(guardrails.NETWORK_POLICY, "a", proxy(ALLOW))
    assert guardrails.missing_default_deny([allow])
    assert guardrails.missing_default_deny([allow, Resource(guardrails.NETWORK_POLICY, "d", proxy(DENY))]) == []
    legacy = Resource(guardrails.CLUSTER, "c", proxy({"datapathProvider": "LEGACY_DATAPATH"}))
    assert guardrails.security_without_dataplane_v2([SECURITY, legacy])


def test_pack_wires_every_validator_as_mandatory():
    tree = ast.parse((PACK / "__main__.py").read_text())
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "guardrails"}
    rules = {"legacy_network_policy_addon", "unpinned_kyverno", "security_without_dataplane_v2", "missing_default_deny"}
    assert rules <= used, f"validators not wired into the pack: {rules - used}"
    source = (PACK / "__main__.py").read_text()
    assert "EnforcementLevel.MANDATORY" in source
    (pack,) = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "PolicyPack"]
    kwargs = {k.arg: k.value for k in pack.keywords}
    assert ast.literal_eval(kwargs["name"]) == "llm-platform-guardrails"
    assert ast.unparse(kwargs["enforcement_level"]) == "EnforcementLevel.MANDATORY"
    kinds = [getattr(p.func, "id", "") for p in kwargs["policies"].elts]
    assert len(kinds) == 4 and set(kinds) == {"ResourceValidationPolicy", "StackValidationPolicy"}
    requirements = (PACK / "requirements.txt").read_text().split()
    assert all("==" in line for line in requirements) and any(r.startswith("pulumi-policy==") for r in requirements)
    assert "runtime:" in (PACK / "PulumiPolicy.yaml").read_text()


def test_pack_policies_report_through_the_engine_callbacks(monkeypatch):
    """Run __main__.py with PolicyPack replaced by a recorder (the real one blocks waiting for the engine),
    then drive each policy's validate callback the way the analyzer does."""
    import runpy
    from types import SimpleNamespace

    import pulumi_policy

    captured = {}
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: captured.update(kwargs))
    monkeypatch.syspath_prepend(str(PACK))
    runpy.run_path(str(PACK / "__main__.py"), run_name="__main__")
    assert captured["name"] == "llm-platform-guardrails"
    assert captured["enforcement_level"] == pulumi_policy.EnforcementLevel.MANDATORY
    policies = {p.name: p for p in captured["policies"]}

    def violations(policy, args):
        found = []
        policy.validate(args, lambda message, urn=None: found.append(message))
        return found

    def resource_args(typ, name, props):
        return SimpleNamespace(resource_type=typ, name=name, props=props, urn=f"urn:pulumi:prod::llm-platform::{typ}::{name}")

    def stack_args(*resources):
        return SimpleNamespace(resources=[SimpleNamespace(resource_type=t, name=n, props=p, urn="") for t, n, p in resources])

    addon = policies["no-legacy-network-policy-addon"]
    assert violations(addon, resource_args(guardrails.CLUSTER, "c", {"networkPolicy": {"enabled": True}}))
    assert violations(addon, resource_args(guardrails.CLUSTER, "c", CLUSTER_OK)) == []
    pinned = policies["kyverno-chart-pinned"]
    assert violations(pinned, resource_args(guardrails.HELM_TYPES[0], "kyverno", {"chart": "kyverno", "version": "^3.8"}))
    assert violations(pinned, resource_args(guardrails.HELM_TYPES[0], "kyverno", {"chart": "kyverno", "version": "3.8.1"})) == []
    dpv2 = policies["security-requires-dataplane-v2"]
    legacy = (guardrails.CLUSTER, "c", {"datapathProvider": "LEGACY_DATAPATH"})
    assert violations(dpv2, stack_args(("llm-platform:security:Security", "s", {}), legacy))
    assert violations(dpv2, stack_args(legacy)) == []
    deny = policies["network-policies-default-deny"]
    assert violations(deny, stack_args((guardrails.NETWORK_POLICY, "a", ALLOW)))
    assert violations(deny, stack_args((guardrails.NETWORK_POLICY, "a", ALLOW), (guardrails.NETWORK_POLICY, "d", DENY))) == []
