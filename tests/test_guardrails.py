"""The guardrail catalog (policies/kyverno/guardrail-*): cases, CEL library, shape, config, component, report.

Every kyverno-test.yaml case of every catalog policy is evaluated with real CEL
(cel-expr-python) by tools/kyverno_eval.py, including the recipe-bug regressions; each
policy is checked against the ClusterPolicy CRD schema vendored from Kyverno v1.18.1; the
stack-rendered policies (params, scope, failure action) are evaluated again; the report runs
the catalog against ../shared/reference-platform and checks each finding.
"""

from __future__ import annotations

import copy
import json
import re
from fractions import Fraction
from pathlib import Path

import jsonschema
import pytest

from components import config as cfgmod
from components import guardrails, pod_templates, yaml_io
from components.kyverno import with_ready_wait
from components.platform_facts import METADATA_SERVER_ADDRESS, NODE_LOCAL_DNS_ADDRESS
from components.quantity import QuantityError, parse_quantity
from tests import kyverno_chart, recipe_regressions
from tools import guardrail_report
from tools import kyverno_eval as ge

ROOT = Path(__file__).resolve().parents[1]
CRD_DIR = ROOT / "vendor" / "kyverno" / "3.8.1" / "crds"
NAMES = list(guardrails.CATALOG.values())
VALIDATE_NAMES = [n for n in NAMES if n != guardrails.EGRESS_POLICY]


def _suites():
    out = {}
    for name in NAMES:
        files = ge.discover_test_files(ROOT / "policies" / "kyverno" / name)
        out[name] = [ge.load_suite(f) for f in files]
    return out


SUITES = _suites()
CASES = [pytest.param(s, c, id=f"{name}:{c.kind}/{c.resource}:{c.rule}:{c.expected}")
         for name, suites in SUITES.items() for s in suites for c in s.cases]


# ------------------------------------------------------------ the cases

@pytest.mark.parametrize("suite,case", CASES)
def test_kyverno_case(suite, case):
    outcome = ge.evaluate_case(suite, case)
    assert outcome.result == case.expected, (
        f"policy {case.policy} rule {case.rule} on {case.kind}/{case.resource} ({suite.path.relative_to(ROOT)}): "
        f"expected {case.expected}, got {outcome.result}: {outcome.message}")
    if case.generated_resource is not None:
        want = yaml_io.load(case.generated_resource.read_text())
        assert outcome.generated == want, (
            f"policy {case.policy} rule {case.rule}: generated resource differs from {case.generated_resource.name}")


@pytest.mark.parametrize("name", NAMES)
def test_every_policy_has_at_least_four_cases_with_pass_and_fail(name):
    cases = [c for s in SUITES[name] for c in s.cases]
    results = {c.expected for c in cases}
    assert len(cases) + (len(EGRESS_UNLOCKED) if name == guardrails.EGRESS_POLICY else 0) >= 4, \
        f"{name}: only {len(cases)} kyverno-test cases"
    if name == guardrails.EGRESS_POLICY:
        assert "pass" in results and any(c.generated_resource for c in cases), name
        assert len(EGRESS_UNLOCKED) >= 3, "the suite's resources hold namespaces that must not be locked"
    else:
        assert {"pass", "fail"} <= results, f"{name}: needs pass and fail cases, has {results}"


# Recipe regressions: cases the recipe the catalog started from decides otherwise, on the real engines
# (tests/recipe_regressions.py; its text is not in the repository, so `make recipe-regressions RECIPE_PAGE=...`
# runs them; docs/guardrails.md shows the run). Here: each is a case of its folder, with a verdict.
REGRESSIONS = [(r.folder, case) for r in recipe_regressions.REGRESSIONS for case in r.cases]
# Catalog fixes for bugs the pinned recipe cannot show on the real engine: its approved-models rule does not
# compile (substring allowlist, version suffix, init containers are never reached), it has no registry rule, and
# no rule reads ephemeral containers. Cases, not proven recipe regressions.
CATALOG_FIXES = [
    ("guardrail-approved-models", "evil-llama-exfil", "fail"),               # `contains` allowlist
    ("guardrail-approved-models", "mistral-suffix-not-a-version", "fail"),   # version-suffix rule
    ("guardrail-approved-models", "unapproved-model-in-init-container", "fail"),   # initContainers
    ("guardrail-no-accelerator-overcommit", "gpu-overcommit-in-init-container", "fail"),
    ("guardrail-memory-bounds", "memory-plain-bytes-and-decimal", "pass"),         # int() on quantities
    ("guardrail-security-baseline", "ephemeral-debugger-unhardened", "fail"),      # ephemeral containers
    ("guardrail-trusted-registries", "untrusted-ephemeral-container", "fail"),
    ("guardrail-trusted-registries", "trusted-name-inside-evil-registry", "fail"),
    ("guardrail-require-limits", "init-container-unbounded", "fail"),
]

# The egress suite's namespaces that the generate rule must leave alone (kyverno test cannot expect a skip
# from a generate rule: it reports "Not found").
EGRESS_SUITE = SUITES[guardrails.EGRESS_POLICY][0]
EGRESS_UNLOCKED = [r for r in EGRESS_SUITE.resources
                   if r["metadata"]["name"] not in {c.resource for c in EGRESS_SUITE.cases}]


@pytest.mark.parametrize("namespace", EGRESS_UNLOCKED, ids=lambda r: r["metadata"]["name"])
def test_egress_lockdown_leaves_other_namespaces_alone(namespace):
    (policy,) = EGRESS_SUITE.policies
    (rule,) = policy["spec"]["rules"]
    outcome = ge.evaluate_rule(rule, namespace, "CREATE", policy=policy)
    assert outcome.result == "skip", (namespace["metadata"], outcome)


def test_egress_lockdown_regression_kube_dns_is_not_locked():
    # recipe regression: the namespace named kube-dns, unlabelled, gets no lockdown
    assert "kube-dns" in [r["metadata"]["name"] for r in EGRESS_UNLOCKED]


@pytest.mark.parametrize("policy,resource,expected", CATALOG_FIXES)
def test_catalog_fixes_are_cases(policy, resource, expected):
    found = [c for s in SUITES[policy] for c in s.cases if c.resource == resource and c.expected == expected]
    assert found, f"{policy}: case {resource} ({expected}) missing from .kyverno-test"


@pytest.mark.parametrize("policy,resource", REGRESSIONS)
def test_recipe_regressions_are_cases_with_a_verdict(policy, resource):
    found = {c.expected for s in SUITES[policy] for c in s.cases if c.resource == resource}
    assert found and found <= {"pass", "fail"}, f"{policy}: regression case {resource} has no pass/fail result"
    suite = recipe_regressions.folder_suite(policy)
    assert recipe_regressions.our_verdict(suite, resource) == ("fail" if "fail" in found else "pass")


def test_flatmap_is_not_kubernetes_cel():
    # The recipe used flatMap; Kubernetes CEL has no such macro, so its policy never compiled.
    with pytest.raises(ge.UnsupportedPolicyError, match="does not compile"):
        ge.compile_expr("[[1], [2]].flatMap(x, x)")
    for name in VALIDATE_NAMES:
        for rule in guardrails.load_policy(name)["spec"]["rules"]:
            cel = rule["validate"]["cel"]
            for item in cel.get("variables", []) + cel["expressions"]:
                assert "flatMap" not in item["expression"], f"{name}/{rule['name']}: flatMap"
                assert not re.search(r"\bint\(", item["expression"]), f"{name}/{rule['name']}: int() on a quantity"


def test_egress_dns_is_kube_dns_in_kube_system():
    (policy,) = [guardrails.load_policy(guardrails.EGRESS_POLICY)]
    egress = policy["spec"]["rules"][0]["generate"]["data"]["spec"]["egress"]
    dns = egress[0]
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                          "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}], "DNS peer"
    assert sorted((p["protocol"], p["port"]) for p in dns["ports"]) == [("TCP", 53), ("UDP", 53)]
    assert "kube-dns" not in json.dumps(dns["to"][0]["namespaceSelector"]), "no namespace named kube-dns"
    assert policy["spec"]["rules"][0]["generate"]["synchronize"] is True
    rendered = _by_name(_settings(), guardrails.EGRESS_POLICY)
    assert rendered["metadata"]["annotations"].pop("pulumi.com/waitFor") == "condition=Ready", \
        "guardrail-egress-lockdown: `pulumi up` waits for the policy to be Ready"
    rendered["metadata"]["annotations"].pop("pulumi.com/timeoutSeconds", None)
    assert rendered == policy, "the default stack renders the policy file unchanged (what kyverno test checks)"


# ------------------------------------------------------------ CEL library

@pytest.mark.parametrize("text,value", [
    ("1", 1), ("2Gi", 2 * 2**30), ("1024Mi", 2**30), ("500m", Fraction(1, 2)), ("1.5", Fraction(3, 2)),
    ("1e3", 1000), ("1E3", 1000), ("2E", 2 * 10**18), ("1k", 1000), (".5Ki", 512), ("-1", -1), ("4G", 4 * 10**9),
])
def test_parse_quantity(text, value):
    assert parse_quantity(text) == value, text


@pytest.mark.parametrize("text", ["", "16 Gi", "1KB", "Gi", "1.2.3", "1ki", "0x10", "1Gi ", " 1", "1Gi\n"])
def test_parse_quantity_rejects(text):
    with pytest.raises(QuantityError):
        parse_quantity(text)


@pytest.mark.parametrize("expr,want", [
    ("quantity('1Gi').compareTo(quantity('1024Mi'))", 0),
    ("quantity('1Gi') == quantity('1024Mi')", True),
    ("quantity('1G').isLessThan(quantity('1Gi'))", True),
    ("quantity('300Gi').isGreaterThan(quantity('256Gi'))", True),
    ("quantity('8').asInteger()", 8),
    ("quantity('2Gi').asApproximateFloat()", float(2**31)),
    ("quantity('500m').isInteger()", False),
    ("quantity('1').add(quantity('500m')).compareTo(quantity('1500m'))", 0),
    ("quantity('2').sub(1).asInteger()", 1),
    ("sign(quantity('-3'))", -1),
    ("isQuantity('16 Gi')", False),
    ("isQuantity('16Gi')", True),
    ("[1, 2, 3].sum()", 6),
    ("[].sum()", 0),
    ("[3, 1, 2].min()", 1),
    ("[3, 1, 2].max()", 3),
])
def test_cel_library(expr, want):
    value = ge.compile_expr(expr).eval(data={})
    assert value.type() != ge.cel.Type.ERROR, f"{expr}: {value.value()}"
    assert value.plain_value() == want, expr


@pytest.mark.parametrize("expr", [
    "quantity('16 Gi')", "quantity('500m').asInteger()", "quantity('9999999999999999999').asInteger()",
    "[].min()", "int('16Gi')",
])
def test_cel_library_errors_like_kubernetes(expr):
    value = ge.compile_expr(expr).eval(data={})
    assert value.type() == ge.cel.Type.ERROR, f"{expr} must be a CEL error, got {value.plain_value()!r}"


def test_message_expressions_name_the_offender():
    policy = guardrails.load_policy("guardrail-approved-models")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "serving"},
           "spec": {"containers": [{"name": "c", "image": "vllm/vllm-openai:v1",
                                    "args": ["--model", "Evil/Llama-3.1-8B-Instruct-Exfil"]}]}}
    out = ge.evaluate_rule(policy["spec"]["rules"][0], pod)
    assert out.result == "fail" and "Evil/Llama-3.1-8B-Instruct-Exfil" in out.message, out.message
    reg = guardrails.load_policy("guardrail-trusted-registries")
    pod["spec"]["containers"][0]["image"] = "quay.io/x/y:1"
    out = ge.evaluate_rule(reg["spec"]["rules"][0], pod)
    assert out.result == "fail" and "untrusted image(s): quay.io/x/y:1" in out.message, out.message
    cap = guardrails.load_policy("guardrail-gpu-cap-per-pod")
    pod["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "6"}}
    out = ge.evaluate_rule(cap["spec"]["rules"][0], pod)
    assert out.result == "fail" and "[6, 0, 0, 0]" in out.message and "cap is 4" in out.message, out.message
    assert "DRA claims" not in out.message, "claims are named only when the Pod has some"


def test_cel_errors_surface_as_error_outcome():
    policy = guardrails.load_policy("guardrail-memory-bounds")
    rule = policy["spec"]["rules"][0]
    # a model server: the floor (and so the quantity) is evaluated; Kyverno never parses it for other Pods
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "serving"},
           "spec": {"containers": [{"name": "c", "image": "vllm/vllm-openai:v0.23.0", "args": ["org/m"],
                                    "resources": {"requests": {"memory": "lots"}}}]}}
    outcome = ge.evaluate_rule(rule, pod)
    assert outcome.result == "fail" and outcome.error, outcome


# ------------------------------------------------------------ shape

@pytest.fixture(scope="module")
def crd_validator():
    def validator(file: str, version: str):
        crd = kyverno_chart.parsed(CRD_DIR / file)
        (v,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
        return jsonschema.Draft7Validator(v["schema"]["openAPIV3Schema"])
    return validator


def _errors(validator, doc):
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("name", NAMES)
def test_policy_file_matches_clusterpolicy_crd(name, crd_validator):
    errors = _errors(crd_validator("kyverno.io_clusterpolicies.yaml", "v1"), guardrails.load_policy(name))
    assert not errors, f"{name}:\n" + "\n".join(errors)


def test_rendered_policies_and_exceptions_match_crds(crd_validator):
    settings = _stack("prod")
    policy_v = crd_validator("kyverno.io_clusterpolicies.yaml", "v1")
    for policy in guardrails.build_policies(settings):
        assert not _errors(policy_v, policy), policy["metadata"]["name"]
    exc_v = crd_validator("kyverno.io_policyexceptions.yaml", "v2")
    for exc in guardrails.build_exceptions(settings):
        assert not _errors(exc_v, exc), exc["metadata"]["name"]


def test_crd_check_detects_errors(crd_validator):
    broken = guardrails.load_policy("guardrail-memory-bounds")
    broken["spec"]["rules"][0]["validate"]["failureAction"] = "Warn"
    broken["spec"]["rules"][0]["match"]["any"][0]["resources"]["operations"] = ["PATCH"]
    errors = _errors(crd_validator("kyverno.io_clusterpolicies.yaml", "v1"), broken)
    assert any("failureAction" in e for e in errors) and any("operations" in e for e in errors), errors


@pytest.mark.parametrize("name", NAMES)
def test_policy_annotations_and_narrow_match(name):
    policy = guardrails.load_policy(name)
    ann = policy["metadata"]["annotations"]
    for key in ("policies.kyverno.io/title", "policies.kyverno.io/category", "policies.kyverno.io/severity",
                "policies.kyverno.io/subject", "policies.kyverno.io/description", "kyverno.io/k8s-version"):
        assert ann.get(key), f"{name}: annotation {key}"
    assert ann["kyverno.io/kyverno-version"] == "1.18.1"
    assert ann[ge.AUTOGEN_ANNOTATION] == "none", f"{name}: autogen is handled explicitly"
    for rule in policy["spec"]["rules"]:
        for flt in rule["match"]["any"]:
            res = flt["resources"]
            assert res["kinds"] and "*" not in json.dumps(res["kinds"]), f"{name}/{rule['name']}: kinds"
            assert set(res["operations"]) <= {"CREATE", "UPDATE"}, f"{name}/{rule['name']}: operations"
            assert {"namespaces", "selector", "namespaceSelector"} & set(res), f"{name}/{rule['name']}: no scope"
        if "validate" in rule:
            assert rule["validate"]["failureAction"] == "Audit", f"{name}/{rule['name']}: Audit first"
            kinds = set(rule["match"]["any"][0]["resources"]["kinds"])
            if "Pod" not in kinds:
                continue  # DRA claims (guardrail-gpu-cap-per-pod/cap-accelerators-per-claim)
            assert set(pod_templates.kyverno_kinds()) <= kinds, f"{name}/{rule['name']}: workload kinds (autogen off)"


# ------------------------------------------------------------ config + component

def _stack(stack: str) -> cfgmod.StackConfig:
    raw = yaml_io.load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return cfgmod.parse({k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}, stack)


def _settings(cluster_dns: dict | None = None, **guardrails_cfg) -> cfgmod.StackConfig:
    return cfgmod.StackConfig.model_validate({
        "existingCluster": {"context": "c", "networkPolicyEnforced": True}, "security": True,
        "tenants": ["team-a"], "clusterDns": cluster_dns or {}, "guardrails": {"enabled": True, **guardrails_cfg}})


def _config_error(guardrails_cfg: dict, security: bool = True) -> str:
    raw = {"llm-platform:existingCluster": json.dumps({"context": "c", "networkPolicyEnforced": True}),
           "llm-platform:security": json.dumps(security), "llm-platform:guardrails": json.dumps(guardrails_cfg)}
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.parse(raw, "dev")
    return str(err.value)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stacks_enable_the_whole_catalog_in_audit(stack):
    settings = _stack(stack)
    assert settings.guardrails.enabled
    policies = guardrails.build_policies(settings)
    assert [p["metadata"]["name"] for p in policies] == NAMES, f"{stack}: whole catalog"
    for p in policies:
        for r in p["spec"]["rules"]:
            if "validate" in r:
                assert r["validate"]["failureAction"] == "Audit", f"{stack}: {p['metadata']['name']}/{r['name']}"


def _cel_value(expression: str):
    return ge.compile_expr(expression).eval(data={}).plain_value()


def test_policy_file_defaults_are_the_config_defaults():
    """`kyverno test` runs the files; with the catalog defaults the stack deploys the same documents, compared
    whole but for two things. The scope: a file scopes its rules to the namespaces its suite's resources live in
    (e.g. `serving`), the stack to its own (set_scope changes only the match filters' namespaces and selectors,
    so the rules, their CEL and kinds are the file's). The parameters' spelling: a file writes `['a']`, the
    stack `["a"]`, compared by value. The failure action is the files' (Audit, the catalog default); the suites
    decide each rule's pass or fail whatever the action, so they test the rules the stack deploys."""
    settings = _settings()
    keys = {name: key for key, name in guardrails.CATALOG.items()}
    for policy in guardrails.build_policies(settings):
        name = policy["metadata"]["name"]
        key = keys.get(name, "ownership")  # the stamp-owner companion takes the ownership policy's scope
        cfg = getattr(settings.guardrails, key)
        want = guardrails.load_policy(name)
        if name != guardrails.EGRESS_POLICY:  # a generate policy: its selector is compared as written
            want = guardrails.set_scope(want, guardrails.policy_namespaces(key, cfg, settings),
                                        cfg.namespace_selector, cfg.object_selector)
        want = with_ready_wait(want)
        got = copy.deepcopy(policy)
        for got_rule, want_rule in zip(got["spec"]["rules"], want["spec"]["rules"], strict=True):
            file_vars = {v["name"]: v["expression"]
                         for v in want_rule.get("validate", {}).get("cel", {}).get("variables", [])}
            for var in got_rule.get("validate", {}).get("cel", {}).get("variables", []):
                written = file_vars.get(var["name"])
                if written is not None and var["expression"] != written:
                    assert _cel_value(var["expression"]) == _cel_value(written), (
                        f"{name}: variable {var['name']} default differs from the config default")
                    var["expression"] = written
        assert got == want, f"{name}: the stack's policy with the catalog defaults is not the file (beyond scope)"


def test_default_exceptions_are_the_tested_ones():
    built = guardrails.build_exceptions(_settings())
    tested = [e for name in ("guardrail-security-baseline", "guardrail-approved-models")
              for e in ge.load_yaml_docs(ROOT / "policies/kyverno" / name / ".kyverno-test/exceptions.yaml")]
    assert [(e["metadata"]["name"], e["metadata"]["namespace"], e["spec"]) for e in built] == \
           [(e["metadata"]["name"], e["metadata"]["namespace"], e["spec"]) for e in tested]
    for e in built:
        (flt,) = e["spec"]["match"]["any"]
        assert len(flt["resources"]["namespaces"]) == 1 and flt["resources"]["names"], e["metadata"]["name"]


def _evaluate(policy, obj, namespace_labels=None):
    (rule, *_) = policy["spec"]["rules"]
    return ge.evaluate_rule(rule, obj, ns_labels=namespace_labels)


def _gpu_pod(ns="serving", sa=None, gpus=1, image="registry.k8s.io/pause:3.10"):
    spec = {"containers": [{"name": "c", "image": image, "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}
    if sa:
        spec["serviceAccountName"] = sa
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns}, "spec": spec}


def _by_name(settings, name):
    return next(p for p in guardrails.build_policies(settings) if p["metadata"]["name"] == name)


def test_params_reach_the_policy():
    s = _settings(gpuCapPerPod={"maxAcceleratorsPerPod": 8},
                  reserveAcceleratorNodes={"allowedServiceAccounts": ["serving/vllm"]})
    cap = _by_name(s, "guardrail-gpu-cap-per-pod")
    assert _evaluate(cap, _gpu_pod(gpus=8)).result == "pass", "cap 8 admits 8 GPUs"
    assert _evaluate(cap, _gpu_pod(gpus=9)).result == "fail", "cap 8 rejects 9 GPUs"
    reserve = _by_name(s, "guardrail-reserve-accelerator-nodes")
    assert _evaluate(reserve, _gpu_pod(sa="vllm")).result == "pass", "serving/vllm is approved"
    assert _evaluate(reserve, _gpu_pod(sa="vllm", ns="team-a")).result == "fail", "team-a/vllm is not"


def test_accelerator_resources_are_shared_with_sr2():
    s = cfgmod.StackConfig.model_validate({
        "existingCluster": {"context": "c", "networkPolicyEnforced": True}, "security": True,
        "kyverno": {"acceleratorResources": ["amd.com/gpu"]}, "guardrails": {"enabled": True}})
    cap = _by_name(s, "guardrail-gpu-cap-per-pod")
    pod = _gpu_pod(gpus=8)
    assert _evaluate(cap, pod).result == "pass", "nvidia.com/gpu is not an accelerator in this stack"
    pod["spec"]["containers"][0]["resources"]["limits"] = {"amd.com/gpu": 8}
    assert _evaluate(cap, pod).result == "fail", "amd.com/gpu is"


def test_accelerator_node_pools_come_from_the_cluster():
    prod = _stack("prod")
    reserve = _by_name(prod, "guardrail-reserve-accelerator-nodes")
    pools = next(v for v in reserve["spec"]["rules"][0]["validate"]["cel"]["variables"]
                 if v["name"] == "acceleratorNodePools")
    assert json.loads(pools["expression"]) == ["gpu-h100", "gpu-l4"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "team-a"},
           "spec": {"nodeSelector": {"cloud.google.com/gke-nodepool": "gpu-h100"},
                    "containers": [{"name": "c", "image": "x"}]}}
    assert _evaluate(reserve, pod).result == "fail", "selecting the gpu-h100 pool by name"
    pod["spec"]["nodeSelector"] = {"cloud.google.com/gke-nodepool": "system"}
    assert _evaluate(reserve, pod).result == "pass", "the system pool is not reserved"


def test_scope_failure_action_and_selectors():
    s = _settings(namespaces=["serving"], memoryBounds={
        "failureAction": "Enforce", "namespaces": ["team-a"], "namespaceSelector": {"purpose": "ai-inference"},
        "objectSelector": {"workload-type": "inference"}})
    mem = _by_name(s, "guardrail-memory-bounds")
    (rule,) = mem["spec"]["rules"]
    assert rule["validate"]["failureAction"] == "Enforce"
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "team-a", "labels": {"workload-type": "inference"}},
           "spec": {"containers": [{"name": "c", "image": "vllm/vllm-openai:v0.23.0", "args": ["org/model"]}]}}
    labels = {"team-a": {"purpose": "ai-inference"}}
    assert _evaluate(mem, pod, namespace_labels=labels).result == "fail"
    assert _evaluate(mem, pod, namespace_labels={}).result == "skip", "namespace label required"
    other = copy.deepcopy(pod)
    other["metadata"]["labels"] = {}
    assert _evaluate(mem, other, namespace_labels=labels).result == "skip", "object label required"
    cap = _by_name(s, "guardrail-gpu-cap-per-pod")
    assert cap["spec"]["rules"][0]["match"]["any"][0]["resources"]["namespaces"] == ["serving"]
    assert cap["spec"]["rules"][0]["validate"]["failureAction"] == "Audit"


def test_disabled_policies_are_not_rendered():
    s = _settings(egressLockdown={"enabled": False}, ownership={"enabled": False})
    names = [p["metadata"]["name"] for p in guardrails.build_policies(s)]
    assert "guardrail-egress-lockdown" not in names and "guardrail-ownership" not in names
    assert len(names) == len(NAMES) - 2


def test_egress_lockdown_uses_the_dns_facts_and_destinations():
    s = _settings(cluster_dns={"nodeLocalDnsCache": True, "cloudDns": True},
                  egressLockdown={"namespaceSelector": {"purpose": "ai-inference"},
                                  "allowedEgress": [{"cidr": "10.0.0.0/24", "ports": [443]}]})
    policy = _by_name(s, guardrails.EGRESS_POLICY)
    (rule,) = policy["spec"]["rules"]
    assert rule["match"]["any"][0]["resources"]["selector"] == {"matchLabels": {"purpose": "ai-inference"}}
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ai", "labels": {"purpose": "ai-inference"}}}
    out = ge.evaluate_rule(rule, ns)
    egress = out.generated["spec"]["egress"]
    assert out.generated["metadata"]["namespace"] == "ai"
    dns_ports = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert egress[1:3] == [{"to": [{"ipBlock": {"cidr": f"{NODE_LOCAL_DNS_ADDRESS}/32"}}], "ports": dns_ports},
                           {"to": [{"ipBlock": {"cidr": f"{METADATA_SERVER_ADDRESS}/32"}}], "ports": dns_ports}]
    assert egress[3] == {"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 443}]}
    assert len(egress) == 4, "nothing else leaves the namespace"


@pytest.mark.parametrize("cfg,key,needle", [
    ({"enabled": True, "memoryBounds": {"requestFloor": "2 Gi"}}, "guardrails.memoryBounds.requestFloor", "quantity"),
    ({"enabled": True, "memoryBounds": {"requestFloor": "512Gi"}}, "guardrails.memoryBounds", "above limitCeiling"),
    ({"enabled": True, "approvedModels": {"models": ["llama-3.1-8b"]}}, "guardrails.approvedModels.models", "org/name"),
    ({"enabled": True, "approvedModels": {"models": ["meta-llama/*"]}}, "guardrails.approvedModels.models", "org/name"),
    ({"enabled": True, "trustedRegistries": {"registries": []}}, "guardrails.trustedRegistries.registries", "empty"),
    ({"enabled": True, "trustedRegistries": {"registries": ["https://gcr.io/"]}}, "guardrails.trustedRegistries.registries", "scheme"),
    ({"enabled": True, "reserveAcceleratorNodes": {"allowedServiceAccounts": ["vllm"]}},
     "guardrails.reserveAcceleratorNodes.allowedServiceAccounts", "namespace/name"),
    ({"enabled": True, "gpuCapPerPod": {"failureAction": "Block"}}, "guardrails.gpuCapPerPod.failureAction", "Audit"),
    ({"enabled": True, "gpuCapPerPod": {"namespaces": []}}, "guardrails.gpuCapPerPod.namespaces", "matches nothing"),
    ({"enabled": True, "egressLockdown": {"namespaceSelector": {}}}, "guardrails.egressLockdown.namespaceSelector", "every namespace"),
    ({"enabled": True, "securityBaseline": {"exceptions": [{"name": "x", "namespace": "y", "names": ["*"],
                                                            "rules": ["run-as-non-root"]}]}},
     "guardrails.securityBaseline.exceptions", "every object"),
    ({"enabled": True, "securityBaseline": {"exceptions": [{"name": "x", "namespace": "y", "names": ["a"],
                                                            "rules": ["all"]}]}},
     "guardrails.securityBaseline.exceptions", "rules"),
    ({"enabled": True, "gpuCapPerPod": {"maxGpus": 2}}, "guardrails.gpuCapPerPod.maxGpus", "unknown key"),
    ({"enabled": True, "securityBaseline": {"allowedCapabilities": ["SYS_ADMIN"]}},
     "guardrails.securityBaseline.allowedCapabilities", "baseline allows"),
    ({"enabled": True, "ownership": {"versionPattern": "v[0-9]+"}}, "guardrails.ownership.versionPattern", "anchored"),
    ({"enabled": True, "ownership": {"versionPattern": "^v(?=1)$"}}, "guardrails.ownership.versionPattern", "RE2"),
    ({"enabled": True, "ownership": {"secretNamePatterns": ["*"]}}, "guardrails.ownership.secretNamePatterns",
     "only wildcards"),
    ({"enabled": True, "ownership": {"versionAnnotation": "ai/model"}}, "guardrails.ownership", "modelAnnotations"),
    ({"enabled": True, "gpuCapPerPod": {"acceleratorDeviceClasses": ["GPU Class"]}},
     "guardrails.gpuCapPerPod.acceleratorDeviceClasses", "DeviceClass"),
    ({"enabled": True, "gpuCapPerPod": {"maxAcceleratorsPerPod": 2, "maxAcceleratorsPerClaim": 4}},
     "guardrails.gpuCapPerPod", "maxAcceleratorsPerClaim 4 is above maxAcceleratorsPerPod 2"),
    ({"enabled": True, "approvedModels": {"exceptions": [{"name": "x", "namespace": "kserve", "names": ["*"]}]}},
     "guardrails.approvedModels.exceptions", "every object"),
    ({"enabled": True, "approvedModels": {"exceptions": [{"name": "guardrail-nvidia-nim", "namespace": "kserve",
                                                          "names": ["*-predictor"]}]}},
     "guardrails", "guardrail-nvidia-nim"),
    ({"enabled": True, "reserveAcceleratorNodes": {"excludeNamespaces": ["Kube_System"]}},
     "guardrails.reserveAcceleratorNodes.excludeNamespaces", "DNS-1123"),
    ({"enabled": True, "egressLockdown": {"allowedEgress": [{"cidr": "10.0.0.0/24", "podSelector": {"app": "x"},
                                                             "ports": [443]}]}},
     "guardrails.egressLockdown.allowedEgress[0]", "either cidr or"),
    ({"enabled": True, "egressLockdown": {"allowedEgress": [{"ports": [4000]}]}},
     "guardrails.egressLockdown.allowedEgress[0]", "either cidr or"),
])
def test_bad_guardrail_config_is_one_clear_error(cfg, key, needle):
    msg = _config_error(cfg)
    assert f"`llm-platform:{key}" in msg and needle in msg, msg


CATALOG_VARS = ("resourceContainers", "serverEntrypoints", "rawLines", "spacedLines", "commandLines", "servers")


def test_model_server_catalog_is_the_same_everywhere():
    """approved-models, the memory floor and model documentation must agree on what a model server is."""
    seen = {}
    for name, rules in [("guardrail-approved-models", None), ("guardrail-memory-bounds", None),
                        ("guardrail-ownership", ("require-model-documentation", "model-secrets-from-vault"))]:
        for rule in guardrails.load_policy(name)["spec"]["rules"]:
            if rules and rule["name"] not in rules:
                continue
            variables = {v["name"]: v["expression"] for v in rule["validate"]["cel"]["variables"]}
            seen[f"{name}/{rule['name']}"] = tuple(variables[v] for v in CATALOG_VARS)
    assert len(seen) == 4 and len(set(seen.values())) == 1, f"catalog variables differ: {list(seen)}"


def test_reserve_allowlist_suite_uses_the_current_policy():
    # .kyverno-test/allowlist/policy.yaml is the policy file with one variable set; regenerate it with:
    #   set_params(load_policy("guardrail-reserve-accelerator-nodes"), {"allowedServiceAccounts": [...]})
    path = ROOT / "policies/kyverno/guardrail-reserve-accelerator-nodes/.kyverno-test/allowlist/policy.yaml"
    (copy_,) = ge.load_yaml_docs(path)
    want = guardrails.set_params(guardrails.load_policy("guardrail-reserve-accelerator-nodes"),
                                 {"allowedServiceAccounts": ["serving/model-server"]})
    assert copy_ == want, f"{path.relative_to(ROOT)} is stale"


def test_reserve_scope_is_every_namespace_but_the_excluded():
    s = _settings(reserveAcceleratorNodes={"excludeNamespaces": ["kube-system", "gpu-operator"]})
    reserve = _by_name(s, "guardrail-reserve-accelerator-nodes")
    (rule,) = reserve["spec"]["rules"]
    assert rule["match"]["any"][0]["resources"]["namespaces"] == ["*"]
    assert rule["exclude"] == {"any": [{"resources": {"namespaces": ["kube-system", "gpu-operator"]}}]}
    assert _evaluate(reserve, _gpu_pod(ns="scratch")).result == "fail", "a namespace nobody listed"
    assert _evaluate(reserve, _gpu_pod(ns="gpu-operator")).result == "skip"
    only = _by_name(_settings(reserveAcceleratorNodes={"namespaces": ["team-a"], "excludeNamespaces": []}),
                    "guardrail-reserve-accelerator-nodes")
    assert "exclude" not in only["spec"]["rules"][0]
    assert _evaluate(only, _gpu_pod(ns="scratch")).result == "skip", "an explicit namespace list still narrows it"


def test_new_params_reach_the_policies():
    s = _settings(securityBaseline={"allowedCapabilities": ["net_bind_service", "CAP_SYS_CHROOT"]},
                  ownership={"secretNamePatterns": ["*-vault", "vllm-api-?ey"]},
                  gpuCapPerPod={"acceleratorDeviceClasses": ["tpu.google.com"], "maxAcceleratorsPerPod": 2})
    assert s.guardrails.security_baseline.allowed_capabilities == ["NET_BIND_SERVICE", "SYS_CHROOT"]
    base = _by_name(s, "guardrail-security-baseline")
    caps = next(r for r in base["spec"]["rules"] if r["name"] == "drop-capabilities")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "serving"},
           "spec": {"containers": [{"name": "c", "image": "x", "securityContext": {
               "capabilities": {"drop": ["ALL"], "add": ["SYS_CHROOT"]}}}]}}
    assert ge.evaluate_rule(caps, pod).result == "pass", "SYS_CHROOT allowed in this stack"
    pod["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]
    out = ge.evaluate_rule(caps, pod)
    assert out.result == "fail" and "c: SYS_ADMIN" in out.message, out.message
    own = _by_name(s, "guardrail-ownership")
    secrets = next(r for r in own["spec"]["rules"] if r["name"] == "model-secrets-from-vault")
    server = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "serving"},
              "spec": {"containers": [{"name": "v", "image": "vllm/vllm-openai:v1", "args": ["org/m"], "env": [
                  {"name": "K", "valueFrom": {"secretKeyRef": {"name": "vllm-api-key", "key": "k"}}}]}]}}
    assert ge.evaluate_rule(secrets, server).result == "pass", "vllm-api-?ey admits vllm-api-key"
    server["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"] = "vllm-api-key-old"
    assert ge.evaluate_rule(secrets, server).result == "fail", "globs are anchored"
    cap = _by_name(s, "guardrail-gpu-cap-per-pod")
    claims = next(r for r in cap["spec"]["rules"] if r["name"] == "cap-accelerators-per-claim")
    claim = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "c", "namespace": "serving"},
             "spec": {"devices": {"requests": [{"name": "t", "exactly": {"deviceClassName": "tpu.google.com",
                                                                         "count": "3"}}]}}}
    assert ge.evaluate_rule(claims, claim).result == "fail", "3 TPUs over a cap of 2"
    claim["spec"]["devices"]["requests"][0]["exactly"]["deviceClassName"] = "gpu.nvidia.com"
    assert ge.evaluate_rule(claims, claim).result == "pass", "gpu.nvidia.com is not an accelerator class here"


def test_dra_claims_per_pod_follow_the_claim_cap():
    # Each claim a Pod references counts as the per-claim cap (the Pod does not carry the claims' counts).
    def pod(n_claims, gpus=0):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "serving"},
                "spec": {"resourceClaims": [{"name": f"c{i}", "resourceClaimTemplateName": "t"} for i in range(n_claims)],
                         "containers": [{"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}}

    def verdicts(settings):
        rules = {r["name"]: r for r in _by_name(settings, "guardrail-gpu-cap-per-pod")["spec"]["rules"]}
        claim = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
                 "metadata": {"name": "t", "namespace": "serving"}, "spec": {"spec": {"devices": {"requests": [
                     {"name": "g", "exactly": {"deviceClassName": "gpu.nvidia.com", "count": 3}}]}}}}
        return ([ge.evaluate_rule(rules["cap-accelerators-per-pod"], pod(n)).result for n in (1, 2, 3)],
                ge.evaluate_rule(rules["cap-accelerators-per-pod"], pod(1, gpus=1)).result,
                ge.evaluate_rule(rules["cap-accelerators-per-claim"], claim).result)

    assert verdicts(_settings()) == (["pass", "fail", "fail"], "fail", "pass"), "default: one claim of up to 4"
    two = _settings(gpuCapPerPod={"maxAcceleratorsPerClaim": 2})
    assert two.guardrails.gpu_cap_per_pod.claim_cap == 2
    assert verdicts(two) == (["pass", "pass", "fail"], "pass", "fail"), "two claims of up to 2; 3 GPUs in a claim fail"


def test_approved_models_message_says_how_to_fix():
    policy = guardrails.load_policy("guardrail-approved-models")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "serving"},
           "spec": {"containers": [{"name": "tgi", "image": "ghcr.io/huggingface/text-generation-inference:3.0",
                                    "envFrom": [{"configMapRef": {"name": "m"}}]}]}}
    out = ge.evaluate_rule(policy["spec"]["rules"][0], pod)
    assert out.result == "fail" and "container tgi: names no model, envFrom may set MODEL_ID" in out.message
    assert "Name the model explicitly" in out.message and "--model-id=<org/name>" in out.message, out.message


def test_catalog_is_behind_security(program_run):
    from tools import mockrun

    on = program_run("prod")
    assert len([r for r in on if r.type == "kubernetes:kyverno.io/v1:ClusterPolicy"
                and r.inputs["metadata"]["name"].startswith("guardrail-")]) == len(NAMES)
    # two security-baseline exceptions, two operator-staged-model exceptions (approved-models)
    assert len([r for r in on if r.type == "kubernetes:kyverno.io/v2:PolicyException"]) == 4
    off = mockrun.run_stack("prod", overrides={"llm-platform:security": False})
    assert not [r for r in off if "Guardrails" in r.type or r.name.startswith("guardrail-")], \
        "security: false registers no guardrail policy"


def test_model_names_are_normalised():
    s = _settings(approvedModels={"models": [" Meta-Llama/Llama-3.1-8B-Instruct "]})
    assert s.guardrails.approved_models.models == ["meta-llama/llama-3.1-8b-instruct"]


def test_summary_lists_every_policy():
    rows = guardrails.summary(_stack("prod"))
    assert [r["policy"] for r in rows] == NAMES
    assert all(r["enabled"] == "yes" for r in rows)
    assert rows[0]["scope"] == "namespaces serving,inference,kserve,llm-d,team-a,team-b,team-c"
    reserve = next(r for r in rows if r["policy"] == "guardrail-reserve-accelerator-nodes")
    assert reserve["scope"] == "every namespace except kube-system,kube-public,kube-node-lease,kyverno,gmp-system"


# ------------------------------------------------------------ real workloads

def _reference_dir() -> Path:
    base = guardrail_report.reference_dir()
    if not base.is_dir():
        pytest.skip(f"reference platform not found at {base}: set LLM_PLATFORM_SHARED to the folder holding "
                    f"reference-platform/ (upstream: {guardrail_report.UPSTREAM})")
    return base


@pytest.fixture(scope="module")
def prod_findings():
    base = _reference_dir()
    settings = _stack("prod")
    manifests = guardrail_report.load_manifests(base)
    return guardrail_report.evaluate(guardrails.build_policies(settings), guardrails.build_exceptions(settings),
                                     manifests)


def _fails(findings):
    return sorted({(f.policy, f.rule, f.manifest.ref) for f in findings if f.result in ("fail", "error")})


SERVERS = {"Deployment serving/coder-agent", "Deployment serving/coder-chat", "Deployment serving/coder-fim",
           "Deployment serving/embeddings", "Deployment serving/raw-vllm"}
SIMULATORS = {"Deployment inference/vllm-sim", "Deployment inference/vllm-sim-b-canary",
              "Deployment inference/vllm-sim-b-stable"}


def test_reference_platform_findings_prod(prod_findings):
    # Every finding is triaged in docs/guardrails.md "Findings on the reference platform".
    workloads = SERVERS | {"Job serving/guidellm-bench", "Job serving/vllm-bench", "Job team-a/gpu-job-a",
                           "Job team-b/gpu-job-b"}
    gpu = (workloads - {"Deployment serving/embeddings"}) | {"Job default/gpu-smoke"}   # every namespace
    with_api_key = SERVERS - {"Deployment serving/embeddings"}   # secretKeyRef vllm-api-key, not *-vault
    want = sorted({("guardrail-ownership", "require-chargeback-labels", w) for w in workloads | SIMULATORS} |
                  {("guardrail-ownership", "require-model-documentation", w) for w in SERVERS} |
                  {("guardrail-ownership", "model-secrets-from-vault", w) for w in with_api_key} |
                  {("guardrail-reserve-accelerator-nodes", "accelerator-service-accounts", w) for w in gpu} |
                  {("guardrail-trusted-registries", "trusted-registries", w) for w in SIMULATORS})
    assert _fails(prod_findings) == want
    assert not [f for f in prod_findings if f.result == "error"], "no CEL errors on real manifests"
    evaluated = {f.manifest.ref for f in prod_findings if f.result in ("pass", "fail")}
    assert workloads | SIMULATORS <= evaluated, f"every in-scope workload is evaluated: {workloads - evaluated}"
    # Every server names a model the stack approves: the fail-closed model check finds nothing to report.
    assert not [f for f in prod_findings if f.policy == "guardrail-approved-models" and f.result != "pass"
                and f.manifest.ref in SERVERS]


def test_reference_platform_with_catalog_defaults():
    # The catalog's own defaults on the same manifests: the findings that drove default changes.
    base = _reference_dir()
    s = cfgmod.StackConfig.model_validate({
        "existingCluster": {"context": "c", "networkPolicyEnforced": True}, "security": True,
        "tenants": ["team-a", "team-b"], "guardrails": {"enabled": True}})
    findings = guardrail_report.evaluate(guardrails.build_policies(s), guardrails.build_exceptions(s),
                                         guardrail_report.load_manifests(base))
    fails = _fails(findings)
    models = {w for p, _, w in fails if p == "guardrail-approved-models"}
    assert models == SERVERS, "servers flagged until their models are approved; benchmark clients are not servers"
    registries = {w for p, _, w in fails if p == "guardrail-trusted-registries"}
    assert registries == {"Job serving/guidellm-bench"} | SIMULATORS, registries
    memory = {w for p, _, w in fails if p == "guardrail-memory-bounds"}
    assert not memory, "every server requests at least 2Gi; the floor no longer applies to other Pods"


# The Deployments the KServe and llm-d operators create from the reference platform's custom resources (the pod
# spec as written; what the operators inject, storage-initializer, modelcar, the llm-d launch command, is not
# modelled): the platform's own namespaces kserve and llm-d are in the default scope, so these are checked.
_ISVC_ONLY = {"minReplicas", "maxReplicas", "deploymentStrategy", "scaleTarget", "scaleMetric", "model",
              "canaryTrafficPercent", "timeout", "batcher", "logger", "autoScaling"}


def _operator_workloads(manifests):
    out = []
    for m in manifests:
        obj, meta = m.obj, m.obj["metadata"]
        if obj["kind"] == "InferenceService":
            templates = {f"{meta['name']}-predictor": {k: v for k, v in obj["spec"]["predictor"].items()
                                                        if k not in _ISVC_ONLY}}
        elif obj["kind"] == "LLMInferenceService":
            templates = {f"{meta['name']}-kserve": obj["spec"]["template"]}
            if "prefill" in obj["spec"]:
                templates[f"{meta['name']}-kserve-prefill"] = obj["spec"]["prefill"]["template"]
        else:
            continue
        for name, spec in templates.items():
            out.append(guardrail_report.Manifest(m.path, {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": meta["namespace"]},
                "spec": {"selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": copy.deepcopy(spec)}}}))
    return out


def test_kserve_and_llm_d_workloads_are_in_scope(prod_findings):
    base = _reference_dir()
    settings = _stack("prod")
    workloads = _operator_workloads(guardrail_report.load_manifests(base))
    assert {w.ref for w in workloads} == {"Deployment kserve/qwen-oci-predictor", "Deployment kserve/qwen-cpu-predictor",
                                          "Deployment llm-d/qwen-llmd-kserve", "Deployment llm-d/qwen-llmd-kserve-prefill"}
    findings = guardrail_report.evaluate(guardrails.build_policies(settings), guardrails.build_exceptions(settings),
                                         workloads)
    assert not [f for f in findings if f.result == "error"]
    fails = {(f.policy.removeprefix("guardrail-"), f.rule, f.manifest.ref.split("/")[1]) for f in findings
             if f.result == "fail"}
    # The models are staged by the operators (/mnt/models, a PVC path, or no argument at all): the policy alone
    # fails closed on all four, and the operator exceptions (kserve/*-predictor, llm-d/*-kserve*) lift exactly
    # approved-models for them, so the catalog can run in Enforce.
    exempt = {f.manifest.ref.split("/")[1]: f.message for f in findings
              if f.policy == "guardrail-approved-models" and f.result == "skip"}
    assert set(exempt) == {"qwen-oci-predictor", "qwen-cpu-predictor", "qwen-llmd-kserve", "qwen-llmd-kserve-prefill"}
    assert "guardrail-kserve-staged-models" in exempt["qwen-oci-predictor"]
    assert "guardrail-llm-d-staged-models" in exempt["qwen-llmd-kserve-prefill"]
    unexcepted = guardrail_report.evaluate(guardrails.build_policies(settings), [], workloads)
    model_msgs = {f.manifest.ref.split("/")[1]: f.message for f in unexcepted
                  if f.policy == "guardrail-approved-models" and f.result == "fail"}
    assert set(model_msgs) == set(exempt), "without the exceptions the policy fails closed on every staged model"
    assert "/mnt/models" in model_msgs["qwen-oci-predictor"] and "/models/qwen" in model_msgs["qwen-cpu-predictor"]
    assert "names no model" in model_msgs["qwen-llmd-kserve"]
    # The same Deployments in a tenant namespace, or in kserve under a name the operator does not give, are checked.
    moved = []
    for w in workloads:
        obj = copy.deepcopy(w.obj)
        obj["metadata"]["namespace"] = "team-a"
        moved.append(guardrail_report.Manifest(w.path, obj))
        obj = copy.deepcopy(w.obj)
        obj["metadata"]["name"] = "side-" + obj["metadata"]["name"].replace("predictor", "p").replace("kserve", "k")
        moved.append(guardrail_report.Manifest(w.path, obj))
    moved_findings = guardrail_report.evaluate(guardrails.build_policies(settings),
                                               guardrails.build_exceptions(settings), moved)
    assert {f.manifest.ref for f in moved_findings if f.policy == "guardrail-approved-models"
            and f.result == "fail"} == {m.ref for m in moved}
    skipped = {(f.rule, f.manifest.ref) for f in findings if f.result == "skip" and f.rule not in (
        "cap-accelerators-per-claim", "generate-egress-lockdown", "approved-models-only")}
    assert not skipped, f"every other Pod rule applies in kserve and llm-d: {skipped}"
    # the trusted registries (prod: digest pinned) admit the vLLM images but not the llm-d or vllm-openai-cpu ones
    assert {w for p, _, w in fails if p == "trusted-registries"} == {
        "qwen-cpu-predictor", "qwen-llmd-kserve", "qwen-llmd-kserve-prefill"}
    # GPU workloads as kserve/default and llm-d/default: not approved in prod
    assert {w for p, _, w in fails if p == "reserve-accelerator-nodes"} == {
        "qwen-oci-predictor", "qwen-llmd-kserve", "qwen-llmd-kserve-prefill"}


def test_report_is_written_by_the_render(tmp_path):
    _reference_dir()
    settings = _stack("prod")
    objs = guardrails.build_policies(settings) + guardrails.build_exceptions(settings)
    path = guardrail_report.write_report("prod", objs, tmp_path)
    text = path.read_text()
    assert "| guardrail-reserve-accelerator-nodes | accelerator-service-accounts |" in text
    assert "Deployment serving/raw-vllm" in text and "Job default/gpu-smoke" in text
    # the "why" names the service account and the reason (messageExpression)
    assert "service account serving/default is not approved for accelerator nodes (tolerates an accelerator taint)" in text
    assert "missing chargeback label(s) on the Pod template: owner, cost-center" in text


def test_report_says_how_to_get_the_reference_platform(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_PLATFORM_SHARED", str(tmp_path / "nowhere"))
    text = guardrail_report.render_markdown("dev", guardrails.build_policies(_settings()), [])
    assert "Skipped" in text and "LLM_PLATFORM_SHARED" in text and "441dd0a" in text


# ------------------------------------------------------------ optional mutate, Kyverno settings

def test_stamp_owner_is_optional_and_schema_valid(crd_validator):
    policy = guardrails.load_policy(guardrails.STAMP_OWNER_POLICY)
    assert not _errors(crd_validator("kyverno.io_clusterpolicies.yaml", "v1"), policy)
    assert policy["spec"]["background"] is False, "reads request.userInfo: admission only"
    assert policy["metadata"]["annotations"][ge.AUTOGEN_ANNOTATION] == "none"
    for rule in policy["spec"]["rules"]:
        text = json.dumps(rule["mutate"])
        assert "+(owner)" in text, f"{rule['name']}: only adds a missing owner label"
        assert "regex_replace_all" in text and "`63`" in text, f"{rule['name']}: label-safe value"
        # a label value starts and ends with a letter or digit: trimmed after the cut (issue 22); the mutate
        # itself is checked by the Kyverno CLI: .kyverno-test/*/stamp-owner-test.yaml (docs/guardrails.md)
        assert "'^[^A-Za-z0-9]+|[^A-Za-z0-9]+$'" in text, f"{rule['name']}: ends trimmed"
        assert rule.get("exclude"), f"{rule['name']}: kube-system controllers' requests are not stamped"
    off = [p["metadata"]["name"] for p in guardrails.build_policies(_settings())]
    assert guardrails.STAMP_OWNER_POLICY not in off, "off by default"
    on = guardrails.build_policies(_settings(ownership={"stampOwner": True}, namespaces=["team-a"]))
    stamp = next(p for p in on if p["metadata"]["name"] == guardrails.STAMP_OWNER_POLICY)
    assert all(r["match"]["any"][0]["resources"]["namespaces"] == ["team-a"] for r in stamp["spec"]["rules"])


def test_policy_exceptions_are_enabled_in_kyverno_only_for_the_catalog():
    from components import kyverno

    k = cfgmod.KyvernoConfig()
    assert "features" not in kyverno.helm_values(k)
    assert kyverno.helm_values(k, True)["features"] == {
        "policyExceptions": {"enabled": True, "namespace": "kyverno"}}
    from tests.kyverno_chart import chart_dir

    values_file = chart_dir() / "values.yaml"
    chart = yaml_io.load(values_file.read_text())
    assert set(chart["features"]["policyExceptions"]) >= {"enabled", "namespace"}, "keys exist in chart 3.8.1"
    for e in guardrails.build_exceptions(_settings()):
        assert e["metadata"]["namespace"] == "kyverno", "exceptions live where Kyverno honours them"


# ------------------------------------------------------------ egress lockdown, by nca

NETPOL_DIR = ROOT / "tests" / "netpol" / "guardrails"


def _nca_egress(policy_cfg: dict, cluster_dns: dict | None = None):
    import tempfile

    from tools import nca

    if not nca.nca_available():
        pytest.skip("network-config-analyzer (package `nca`, requirements.txt) is not installed in this Python")
    policy = _by_name(_settings(cluster_dns, egressLockdown=policy_cfg), guardrails.EGRESS_POLICY)
    (rule,) = policy["spec"]["rules"]
    namespaces = yaml_io.load((NETPOL_DIR / "namespaces.yaml").read_text())["items"]
    generated = [ge.evaluate_rule(rule, ns).generated for ns in namespaces]
    generated = [g for g in generated if g]
    assert [g["metadata"]["namespace"] for g in generated] == ["ai-locked"], "only the labelled namespace"
    with tempfile.TemporaryDirectory() as tmp:
        pol = Path(tmp) / "policies.yaml"
        pol.write_text(yaml_io.dump_all(generated))
        rc, stdout, stderr = nca.run_nca(nca.nca_args(pol, NETPOL_DIR / "pods.yaml", NETPOL_DIR / "namespaces.yaml"))
    assert rc == 0, stdout[-2000:] + stderr[-2000:]
    # nca prints several protocols as "protocols:TCP, UDP"; the SR1 parser expects no space.
    return nca.parse_output(stdout.replace("TCP, UDP", "TCP,UDP"))


def test_egress_lockdown_connectivity_by_nca():
    from tools.nca import NOTHING

    pairs = _nca_egress({"allowedEgress": [{"cidr": "10.0.0.0/24", "ports": [443]}]})
    src = "ai-locked/model-0"
    dns = pairs.get((src, "kube-system/kube-dns-0"), NOTHING)
    assert dns.allows(53) and dns.allows(53, "UDP"), f"kube-dns in kube-system on TCP and UDP 53: {dns}"
    assert not dns.allows(80) and dns.tcp == ((53, 53),), f"only port 53 to kube-dns: {dns}"
    for dst in ("kube-system/metrics-server-0", "kube-dns/fake-dns-0", "serving/vllm-0"):
        assert not pairs.get((src, dst), NOTHING), f"egress lockdown: {src} must not reach {dst}"
    external = {d: a for (s, d), a in pairs.items() if s == src and "/" not in d}
    assert external and all(
        d.startswith("10.0.0.0-10.0.0.255") and a.tcp == ((443, 443),) and not a.other
        for d, a in external.items()), f"only 10.0.0.0/24:443 outside the cluster: {external}"
    assert pairs.get(("serving/vllm-0", "kube-dns/fake-dns-0"), NOTHING), "other namespaces are unaffected"


def test_egress_lockdown_reaches_litellm_by_peer_by_nca():
    from tools.nca import NOTHING

    pairs = _nca_egress({"allowedEgress": [{"namespaceSelector": {"kubernetes.io/metadata.name": "litellm"},
                                            "podSelector": {"app.kubernetes.io/name": "litellm"}, "ports": [4000]}]})
    src = "ai-locked/model-0"
    litellm = pairs.get((src, "litellm/litellm-proxy-0"), NOTHING)
    assert litellm.tcp == ((4000, 4000),) and not litellm.other, f"LiteLLM on 4000 only: {litellm}"
    for dst in ("litellm/litellm-db-0", "serving/vllm-0", "kube-system/metrics-server-0"):
        assert not pairs.get((src, dst), NOTHING), f"egress lockdown: {src} must not reach {dst}"
    assert not {d for (s, d) in pairs if s == src and "/" not in d}, "nothing outside the cluster"


@pytest.mark.parametrize("cluster_dns, addresses", [
    ({"nodeLocalDnsCache": True}, [NODE_LOCAL_DNS_ADDRESS]),
    ({"cloudDns": True}, [METADATA_SERVER_ADDRESS]),
])
def test_egress_lockdown_cluster_dns_by_nca(cluster_dns, addresses):
    pairs = _nca_egress({}, cluster_dns)
    external = {d: a for (s, d), a in pairs.items() if s == "ai-locked/model-0" and "/" not in d}
    assert list(external) == addresses, f"only the clusterDns resolver address: {external}"
    allowed = external[addresses[0]]
    assert allowed.tcp == ((53, 53),) and allowed.allows(53, "UDP"), allowed


@pytest.mark.parametrize("namespace, patterns, matches", [
    ("team-0999", [f"team-{i:04d}" for i in range(1000)], True),
    ("team-1000", [f"team-{i:04d}" for i in range(1000)], False),
    ("team-x", ["serving", "team-*"], True),
    ("teams", ["serving", "team-*"], False),
    ("team-7", ["team-?"], True),
    ("team.x", ["team?x"], True),
    # go-wildcard, as Kyverno uses it, has no character classes: `[` is literal.
    ("team-b", ["team-[ab]"], False),
    ("team-[ab]", ["team-[ab]"], True),
    ("team-a", ["te*-a", "nothing"], True),
    ("serving", ["serving"], True),
    ("serving-x", ["serving"], False),
])
def test_namespace_match_is_kyvernos_wildcard_match(namespace, patterns, matches):
    """A rule scoped by `namespaces` (every tenant by name, or a wildcard) applies exactly where Kyverno's
    wildcard match (`*`, `?`) says, whether the name is looked up directly or tried pattern by pattern."""
    rule = {"match": {"any": [{"resources": {"kinds": ["Pod"], "namespaces": patterns}}]}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace}}
    assert ge.rule_applies(rule, pod, "CREATE", {}) is matches, (
        f"rule scoped to {patterns[:3]}...: Pod in {namespace} must {'' if matches else 'not '}match"
    )


@pytest.mark.parametrize("stack,tag_only", [("prod", "fail"), ("dev", "pass")])
def test_prod_requires_images_pinned_by_digest(stack, tag_only):
    """Prod's trusted-registries policy refuses a trusted image by tag alone; dev takes it. A digest passes both."""
    (policy,) = [p for p in guardrails.build_policies(_stack(stack))
                 if p["metadata"]["name"] == "guardrail-trusted-registries"]
    by_tag = _gpu_pod(image="docker.io/vllm/vllm-openai:v0.11.0")
    by_digest = _gpu_pod(image="docker.io/vllm/vllm-openai@sha256:" + "a" * 64)
    outcome = _evaluate(policy, by_tag)
    assert outcome.result == tag_only, f"{stack}: {outcome}"
    if tag_only == "fail":
        assert "pinned by digest" in outcome.message
    assert _evaluate(policy, by_digest).result == "pass", stack


@pytest.mark.parametrize("policy,extra", [("approvedModels", {}), ("securityBaseline", {"rules": ["run-as-non-root"]})])
@pytest.mark.parametrize("field,value,needle", [
    ("names", ["*"], "matches every object"),
    ("names", ["**?"], "matches every object"),
    ("namespace", "Not_A_Namespace", "exception namespace"),
    ("name", "UPPER", "exception name"),
])
def test_a_catalog_exception_must_name_its_objects(policy, extra, field, value, needle):
    """Both exception lists refuse a wildcard that lifts the policy for every object, and invalid names."""
    exc = {"name": "x", "namespace": "serving", "names": ["nim-llm"], **extra, field: value}
    message = _config_error({"enabled": True, policy: {"exceptions": [exc]}})
    assert needle in message and policy in message, message
