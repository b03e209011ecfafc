"""Tenant boundaries: NetworkPolicy writes in isolated namespaces, tenant routes to platform Gateways,
Pod Security on agent namespaces.

Every kyverno-test.yaml case of the two policy folders is evaluated by the project's evaluator
(tools/kyverno_eval.py, real CEL); `make kyverno-test` runs the same folders with the Kyverno CLI and
replays the decisions below. The stacks' renderings are checked on the requests that matter: the
deployer, Kyverno's generate, a tenant, the reference platform's own routes.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import pathlib

import pytest
import yaml

from components import config, namespaces, platform_facts, yaml_io
from components import kyverno as kyverno_component
from components import tenant_boundaries as tb
from components.config import ConfigError, KyvernoConfig
from tests.kyverno_chart import chart_dir
from tests.reference_platform import reference_dir
from tools import kyverno_eval, pod_security

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDERS = [tb.POLICY_DIR / tb.NETWORK_POLICY_GUARD, tb.POLICY_DIR / tb.ROUTE_GUARD]
CRD = ROOT / "vendor" / "kyverno" / "3.8.1" / "crds" / "kyverno.io_clusterpolicies.yaml"
DEPLOYER = "pulumi-dev-deployer@llm-platform-dev.iam.gserviceaccount.com"
PREVIEW = "pulumi-dev-preview@llm-platform-dev.iam.gserviceaccount.com"
TENANT = "alice@example.com"
LOCKED = {"team-a": {"llm-platform/egress-lockdown": "true"}}


def _stack(name: str) -> config.StackConfig:
    raw = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())["config"]
    return config.parse({k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}, name)


def _parse_dev_with(key: str, value) -> config.StackConfig:
    raw = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    raw[key] = value
    return config.parse({k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}, "dev")


def _with(settings: config.StackConfig, **changes) -> config.StackConfig:
    data = settings.model_dump(by_alias=True)
    for dotted, value in changes.items():
        target = data
        *path, last = dotted.split(".")
        for key in path:
            target = target[key]
        target[last] = value
    return config.StackConfig.model_validate(data)


def _cases():
    out = []
    for folder in FOLDERS:
        for test_file in kyverno_eval.discover_test_files(folder):
            suite = kyverno_eval.load_suite(test_file)
            for case in suite.cases:
                rel = test_file.parent.relative_to(folder)
                out.append(pytest.param(suite, case, id=f"{folder.name}/{rel}:{case.resource}:{case.rule}:{case.expected}"))
    return out


@pytest.mark.parametrize("suite,case", _cases())
def test_folder_case(suite, case):
    outcome = kyverno_eval.evaluate_case(suite, case)
    assert not outcome.error, outcome.message
    assert outcome.result == case.expected, f"{case.resource}: expected {case.expected}, got {outcome.result}: {outcome.message}"


def test_suites_cover_bypass_and_legitimate_requests():
    results = {(p.values[1].rule, p.values[1].expected, p.values[0].username) for p in _cases()}
    for rule in (tb.AGENT_RULE, tb.LOCKDOWN_RULE):
        assert (rule, "fail", TENANT) in results and (rule, "pass", "system:serviceaccount:kyverno:kyverno-background-controller") in results
    assert {e for r, e, _ in results if r == "no-tenant-routes-to-platform-gateways"} == {"pass", "fail"}


# ------------------------------------------------------------------ NetworkPolicy writes


def _netpol(namespace: str, name: str = "allow-all-egress") -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}}


def _decide(policy: dict, obj: dict, operation: str, user: str, groups=(), ns_labels=None) -> str:
    """`fail` (refused), `pass` or `skip` for one request, through matchConditions and every rule."""
    if not kyverno_eval.webhook_matches(policy, obj, operation, username=user, groups=list(groups)):
        return "not-sent"
    results = {kyverno_eval.evaluate_rule(r, obj, operation, user, list(groups), ns_labels or {}, policy=policy).result
               for r in policy["spec"]["rules"]}
    return "fail" if "fail" in results else ("pass" if "pass" in results else "skip")


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE", "DELETE"])
def test_dev_rendering_refuses_tenants_and_admits_the_platform(operation):
    policy = tb.network_policy_guard(_stack("dev"))
    # Enforce although dev audits its other policies: agent isolation runs only in dev, and an audited
    # extra NetworkPolicy would undo it there.
    assert policy is not None and policy["spec"]["validationFailureAction"] == "Enforce"
    for ns in ("agents", "team-a"):
        obj = _netpol(ns)
        assert _decide(policy, obj, operation, TENANT, ["system:authenticated"], LOCKED) == "fail", ns
        assert _decide(policy, obj, operation, "system:serviceaccount:agents:default", [], LOCKED) == "fail", ns
        # The deployer and its preview dry-runs never reach Kyverno, and the rules would admit them too.
        for user in (DEPLOYER, PREVIEW, "system:serviceaccount:kyverno:kyverno-background-controller"):
            assert _decide(policy, obj, operation, user, [], LOCKED) == "not-sent", (ns, user)
            nocond = copy.deepcopy(policy)
            nocond["spec"]["webhookConfiguration"].pop("matchConditions")
            assert _decide(nocond, obj, operation, user, [], LOCKED) == "pass", (ns, user)
        assert _decide(policy, obj, operation, "cluster-admin", ["system:masters"], LOCKED) == "not-sent", ns
    # A namespace neither agent nor locked: its tenant decides.
    assert _decide(policy, _netpol("team-b"), operation, TENANT, [], LOCKED) == "skip"


def test_prod_rendering_guards_the_locked_namespaces_only():
    policy = tb.network_policy_guard(_stack("prod"))
    assert policy is not None and policy["spec"]["validationFailureAction"] == "Enforce"
    assert [r["name"] for r in policy["spec"]["rules"]] == [tb.LOCKDOWN_RULE]
    assert _decide(policy, _netpol("team-a"), "CREATE", TENANT, [], LOCKED) == "fail"
    assert _decide(policy, _netpol("team-a"), "CREATE", "pulumi-prod-deployer@llm-platform-prod.iam.gserviceaccount.com",
                   [], LOCKED) == "not-sent"
    # The dev deployer is nobody in prod.
    assert _decide(policy, _netpol("team-a"), "CREATE", DEPLOYER, [], LOCKED) == "fail"


def test_the_lockdown_label_follows_the_config():
    s = _with(_stack("dev"), **{"guardrails.egressLockdown.namespaceSelector": {"egress": "locked"}})
    policy = tb.network_policy_guard(s)
    assert _decide(policy, _netpol("team-a"), "CREATE", TENANT, [], {"team-a": {"egress": "locked"}}) == "fail"
    assert _decide(policy, _netpol("team-a"), "CREATE", TENANT, [], LOCKED) == "skip"


def test_policy_is_registered_only_when_a_namespace_needs_it():
    dev = _stack("dev")
    assert tb.network_policy_guard(_with(dev, security=False)) is None
    off = _with(dev, **{"agentIsolation.enabled": False, "guardrails.egressLockdown.enabled": False})
    assert tb.network_policy_guard(off) is None
    agents_only = _with(dev, **{"guardrails.enabled": False})
    assert [r["name"] for r in tb.network_policy_guard(agents_only)["spec"]["rules"]] == [tb.AGENT_RULE]
    assert tb.network_policy_guard(agents_only)["spec"]["rules"][0]["match"]["any"][0]["resources"]["namespaces"] == ["agents"]


def test_kyverno_sees_network_policies_and_routes():
    # Kyverno's resourceFilters (chart defaults + ours) must not skip the kinds, nor its webhook's
    # namespaceSelector the namespaces, these policies guard.
    values = yaml.safe_load((chart_dir() / "values.yaml").read_text())["config"]
    ours = kyverno_component.helm_values(KyvernoConfig())["config"]
    filters = [e.strip("[]").split(",") for e in values["resourceFilters"] + ours.get("resourceFiltersInclude", [])
               if "{{" not in e and e not in ours.get("resourceFiltersExclude", [])]
    assert ["ReplicaSet", "*", "*"] in filters  # the model reads the real filters
    for kind, ns in (("NetworkPolicy", "agents"), ("NetworkPolicy", "team-a"), ("HTTPRoute", "team-a"),
                     ("GRPCRoute", "team-a")):
        hit = [f for f in filters if fnmatch.fnmatchcase(kind, f[0].replace("?*", "*")) and fnmatch.fnmatchcase(ns, f[1])]
        assert not hit, f"{kind} in {ns} is filtered by {hit}"
    (expr,) = ours["webhooks"]["namespaceSelector"]["matchExpressions"]
    assert expr["operator"] == "NotIn" and not {"agents", "team-a"} & set(expr["values"])


def test_config_refuses_untrustworthy_writers():
    dev = _stack("dev")
    with pytest.raises(ValueError, match="networkPolicyWriters"):
        _with(dev, **{"tenantBoundaries.networkPolicyWriters": ["system:serviceaccount:team-a:deployer"]})
    with pytest.raises(ValueError, match="networkPolicyWriters"):
        _with(dev, **{"tenantBoundaries.networkPolicyWriters": ["system:serviceaccount:agents:default"]})
    with pytest.raises(ConfigError, match="tenantBoundaries.networkPolicyWriters"):
        _parse_dev_with("llm-platform:tenantBoundaries", {"networkPolicyWriters": ["system:anonymous"]})


# ------------------------------------------------------------------ routes to platform Gateways


def _routes(root: pathlib.Path) -> list[dict]:
    out = []
    for path in sorted(root.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in ("HTTPRoute", "GRPCRoute", "Gateway"):
                out.append(doc)
    return out


def test_the_gateway_list_is_the_reference_platforms_open_gateways():
    # Every reference Gateway that takes routes from all namespaces is in the one list, and only those.
    ref = reference_dir("routing")
    namespaces_of = {"gateway.yaml": "inference"}  # routing/.../gateway/ is installed into `inference` (Argo app)
    open_gateways = set()
    for gw in (d for d in _routes(ref) if d["kind"] == "Gateway"):
        ns = gw["metadata"].get("namespace") or namespaces_of["gateway.yaml"]
        if any(lst.get("allowedRoutes", {}).get("namespaces", {}).get("from") == "All" for lst in gw["spec"]["listeners"]):
            open_gateways.add((ns, gw["metadata"]["name"]))
    assert open_gateways == set(platform_facts.PLATFORM_GATEWAYS)
    gateways = [f"{g.namespace}/{g.name}" for g in config.TenantBoundariesConfig().platform_gateways]
    (rule,) = tb.route_guard(_stack("prod"))["spec"]["rules"]
    var = next(v for v in rule["validate"]["cel"]["variables"] if v["name"] == "platformGateways")
    assert json.loads(var["expression"]) == gateways


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_reference_platform_routes_stay_admitted(stack):
    ref = reference_dir("routing")
    installed_in = {"httproute.yaml": "inference"}  # the demo route (Argo app destination `inference`)
    policy = tb.route_guard(_stack(stack))
    (rule,) = policy["spec"]["rules"]
    seen = 0
    for path in sorted(ref.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in ("HTTPRoute", "GRPCRoute"):
                doc = copy.deepcopy(doc)
                if not doc["metadata"].get("namespace"):
                    doc["metadata"]["namespace"] = installed_in[path.name]
                outcome = kyverno_eval.evaluate_rule(rule, doc, "CREATE", "system:serviceaccount:argocd:argocd-application-controller",
                                                     policy=policy)
                assert outcome.result == "pass", f"{path}: {outcome.message}"
                seen += 1
    assert seen >= 3


def _route(namespace: str, *parents: dict, kind: str = "HTTPRoute") -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": kind,
            "metadata": {"name": "r", "namespace": namespace},
            "spec": {"parentRefs": list(parents), "rules": [{"backendRefs": [{"name": "echo", "port": 8080}]}]}}


def test_route_guard_follows_the_config():
    s = _with(_stack("prod"), **{"tenantBoundaries.platformGateways": [{"namespace": "edge", "name": "public"}],
                                 "tenantBoundaries.routeNamespaces": ["edge"]})
    policy = tb.route_guard(s)
    (rule,) = policy["spec"]["rules"]
    refused = kyverno_eval.evaluate_rule(rule, _route("team-a", {"name": "public", "namespace": "edge"}), "CREATE", TENANT)
    assert refused.result == "fail" and "edge/public" in refused.message
    # The old gateways are no longer listed; routes in `edge` are the platform's.
    assert kyverno_eval.evaluate_rule(rule, _route("team-a", {"name": "inference-gateway", "namespace": "inference"}),
                                      "CREATE", TENANT).result == "pass"
    assert kyverno_eval.evaluate_rule(rule, _route("edge", {"name": "public"}), "CREATE", TENANT).result == "pass"
    # The webhook is not called for the platform's namespaces (a Kyverno outage never blocks KServe's routes).
    for ns, sent in (("kserve", False), ("edge", False), ("serving", False), ("team-a", True)):
        assert kyverno_eval.webhook_matches(policy, _route(ns, {"name": "x"}), "CREATE") is sent, ns


def test_config_refuses_tenant_route_namespaces_and_empty_gateways():
    dev = _stack("dev")
    with pytest.raises(ValueError, match="routeNamespaces"):
        _with(dev, **{"tenantBoundaries.routeNamespaces": ["team-a"]})
    with pytest.raises(ValueError, match="routeNamespaces"):
        _with(dev, **{"tenantBoundaries.routeNamespaces": ["agents"]})
    with pytest.raises(ConfigError, match="tenantBoundaries.platformGateways"):
        _parse_dev_with("llm-platform:tenantBoundaries", {"platformGateways": []})


# ------------------------------------------------------------------ Pod Security on agent namespaces


def _agent_pods() -> dict[str, dict]:
    path = ROOT / "policies" / "kyverno" / "agent-runtime-isolation" / ".kyverno-test" / "resources.yaml"
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all(path.read_text()) if d}


def test_agent_namespaces_enforce_restricted():
    labels = namespaces.namespace_labels(_stack("dev"))
    assert labels["agents"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert namespaces.namespace_metadata("agents", labels["agents"])["labels"][namespaces.OWNER_LABEL] == "llm-platform"
    pods = _agent_pods()
    # The legitimate agent Pod of the admission suite passes restricted; the bypasses do not.
    assert pod_security.admit(labels["agents"], pods["agent-restricted"]).allowed
    for name in ("agent-host-network", "agent-host-pid", "agent-host-port", "agent-cap-net-admin", "agent-ok"):
        assert not pod_security.admit(labels["agents"], pods[name]).allowed, name


def test_agent_pod_security_level_is_configurable_and_off_without_security():
    dev = _stack("dev")
    baseline = namespaces.namespace_labels(_with(dev, **{"agentIsolation.podSecurity": {"enforce": "baseline"}}))
    assert baseline["agents"]["pod-security.kubernetes.io/enforce"] == "baseline"
    assert pod_security.admit(baseline["agents"], _agent_pods()["agent-ok"]).allowed
    assert not pod_security.admit(baseline["agents"], _agent_pods()["agent-host-network"]).allowed
    assert namespaces.namespace_labels(_with(dev, security=False)) == {}
    assert namespaces.namespace_labels(_with(dev, **{"agentIsolation.enabled": False})) == {}


# ------------------------------------------------------------------ policy files


@pytest.fixture(scope="module")
def schema():
    crd = yaml_io.load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_rendered_policies_match_the_crd_schema(schema, stack):
    import jsonschema

    policies = tb.build_all(_stack(stack))
    assert {p["metadata"]["name"] for p in policies} == {tb.NETWORK_POLICY_GUARD, tb.ROUTE_GUARD}
    for policy in policies:
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(policy))
        assert not errors, [e.message for e in errors]
        assert policy["metadata"]["annotations"]["pulumi.com/waitFor"] == "condition=Ready"
        kyverno_eval.check_policy_supported(policy)


def test_policy_files_follow_the_folder_layout():
    for folder in FOLDERS:
        policy = yaml.safe_load((folder / f"{folder.name}.yaml").read_text())
        assert policy["metadata"]["name"] == folder.name
        ann = policy["metadata"]["annotations"]
        for key in ("policies.kyverno.io/title", "policies.kyverno.io/category", "policies.kyverno.io/severity",
                    "policies.kyverno.io/description", kyverno_eval.AUTOGEN_ANNOTATION):
            assert ann.get(key), f"{folder.name}: annotation {key} missing"
        assert kyverno_eval.discover_test_files(folder), folder.name


# ------------------------------------------------------------------ the program


def test_the_boundaries_have_their_own_failure_action():
    """kyverno.failureAction Audit (dev) leaves the boundaries in Enforce; tenantBoundaries.failureAction decides."""
    dev = _stack("dev")
    assert dev.kyverno.failure_action == "Audit"
    for build in (tb.network_policy_guard, tb.route_guard):
        assert build(dev)["spec"]["validationFailureAction"] == "Enforce", build.__name__
        audited = dev.model_copy(update={"tenant_boundaries": dev.tenant_boundaries.model_copy(
            update={"failure_action": "Audit"})})
        assert build(audited)["spec"]["validationFailureAction"] == "Audit", build.__name__


@pytest.mark.parametrize("stack,action", [("dev", "Enforce"), ("prod", "Enforce")])
def test_program_registers_the_boundaries_after_kyverno(program_run, stack, action):
    records = program_run(stack)
    (release,) = [r for r in records if r.type == "kubernetes:helm.sh/v3:Release"]
    policies = {r.inputs["metadata"]["name"]: r for r in records
                if r.type == "kubernetes:kyverno.io/v1:ClusterPolicy" and "llm-platform:security:TenantBoundaries" in r.parent}
    assert set(policies) == {tb.NETWORK_POLICY_GUARD, tb.ROUTE_GUARD}
    for p in policies.values():
        assert release.urn in p.dependencies and p.inputs["spec"]["validationFailureAction"] == action
    agents = [r for r in records if r.type == "kubernetes:core/v1:Namespace" and r.inputs["metadata"]["name"] == "agents"]
    if stack == "dev":
        (ns,) = agents
        assert ns.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    else:
        assert agents == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_listed_writers_are_the_stacks_ci_identities(stack):
    # The deployer (and its preview dry-runs) must pass, or `pulumi up` fails on the agent policies in Enforce.
    from tools import ci_identities

    s = _stack(stack)
    expected = [ci_identities.Identity(stack, purpose, s.gcp_project, ()).email for purpose in ("deployer", "preview")]
    assert s.tenant_boundaries.network_policy_writers == expected
