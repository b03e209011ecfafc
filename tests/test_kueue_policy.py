"""Tests for the SR2 Kyverno policy require-kueue-queue-name.

Every kyverno-test.yaml case below the policy folder is evaluated with real CEL
(cel-expr-python) by tests/kyverno_cel.py; the policy is validated against the
ClusterPolicy CRD schema of Kyverno v1.18.1 (vendored; KYVERNO_CHART_DIR overrides).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import pytest

from components import kueue_policy, yaml_io  # noqa: E402
from components.config import KUEUE_DEFAULT_FRAMEWORKS, ConfigError, KyvernoConfig, parse  # noqa: E402
from tests import kueue_objects as ko  # noqa: E402
from tests import kyverno_cel, kyverno_chart  # noqa: E402
from tests.kyverno_chart import chart_dir  # noqa: E402
from tools import kyverno_eval  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
POLICY_DIR = ROOT / "policies" / "kyverno" / "require-kueue-queue-name"
POLICY_FILE = kueue_policy.POLICY_FILE
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


@functools.lru_cache(maxsize=1)
def _policy_file() -> dict:
    (policy,) = kyverno_cel.load_yaml_docs(POLICY_FILE)
    return policy


def _load_policy() -> dict:
    """The committed default rendering (parsed once; each caller gets its own copy)."""
    return copy.deepcopy(_policy_file())


def _collect_cases():
    params = []
    for test_file in kyverno_cel.discover_test_files(POLICY_DIR):
        suite = kyverno_cel.load_suite(test_file)
        folder = test_file.parent.relative_to(POLICY_DIR)
        for case in suite.cases:
            params.append(pytest.param(
                suite, case,
                id=f"{folder}:{case.kind}/{case.resource}:{case.rule}:{case.expected}"))
    return params


CASES = _collect_cases()
UPDATE_CASES = [pytest.param(c, id=f"{c.name}:{c.expected}")
                for f in kyverno_cel.discover_update_files(POLICY_DIR)
                for c in kyverno_cel.load_update_cases(f)]
NS_LABELS = {"team-a": {"llm-platform/kueue-managed": "true"}}


def test_enough_cases_and_parents_covered():
    kinds = {p.values[1].kind for p in CASES}
    results = {p.values[1].expected for p in CASES}
    assert len(CASES) >= 60, f"only {len(CASES)} kyverno-test cases"
    assert {"Pod", "Job", "CronJob", "JobSet", "RayJob", "RayCluster", "Deployment", "StatefulSet",
            "LeaderWorkerSet", "PyTorchJob", "MPIJob", "TrainJob", "AppWrapper"} <= kinds, kinds
    assert results == {"pass", "fail", "skip"}, results
    # one sub-folder per trusted controller identity, each with at least one admitted request
    users = {p.values[0].username for p in CASES if p.values[1].expected == "pass"}
    trusted = set(kueue_policy.TrustedControllers().model_dump().values()) - {
        kueue_policy.TrustedControllers().kueue}
    assert trusted <= users, f"no admitted request from {sorted(trusted - users)}"
    assert len(UPDATE_CASES) >= 25, len(UPDATE_CASES)


@pytest.mark.parametrize("suite,case", CASES)
def test_kyverno_case(suite, case):
    outcome = kyverno_cel.evaluate_case(suite, case)
    assert outcome.result == case.expected, (
        f"resource {case.kind}/{case.resource} rule {case.rule} "
        f"(user {suite.username or '<none>'}, {suite.path.relative_to(ROOT)}): "
        f"expected {case.expected}, got {outcome.result}; message: {outcome.message}")
    if outcome.result == "fail":
        assert QUEUE_LABEL in outcome.message, outcome.message


@pytest.mark.parametrize("case", UPDATE_CASES)
def test_update_case(case):
    """UPDATEs whose old object differs (gate removal, unsuspend, relabel, ownerReference, ephemeral containers)."""
    policy = _load_policy()
    (rule,) = [r for r in policy["spec"]["rules"] if r["name"] == case.rule]
    outcome = kyverno_cel.evaluate_rule(rule, case.object, case.operation, case.username, [],
                                        NS_LABELS, old=case.old_object, subresource=case.subresource)
    assert outcome.result == case.expected, (
        f"update case {case.name} ({case.object['kind']}/{case.object['metadata']['name']}, user "
        f"{case.username}) rule {case.rule}: expected {case.expected}, got {outcome.result}; {outcome.message}")


def _stack_policy() -> dict:
    return kueue_policy.render_policy(KyvernoConfig())


@pytest.mark.parametrize("suite,case", [p for p in CASES if p.values[1].expected == "fail"])
def test_every_denied_request_reaches_kyverno(suite, case):
    """The webhook's matchConditions must send every request the policy denies to Kyverno (as the API server
    evaluates them: the body it sends, e.g. a Scale, and the request's subresource)."""
    req = kyverno_eval.case_request(suite, case)
    old = req.sent if req.operation == "UPDATE" else None
    assert kyverno_cel.webhook_matches(_stack_policy(), req.sent, req.operation, old, suite.username,
                                       subresource=req.subresource), (
        f"{case.kind}/{case.resource}: denied by rule {case.rule} but the webhook's matchConditions "
        "would never send it to Kyverno")


@pytest.mark.parametrize("case", [p for p in UPDATE_CASES if p.values[0].expected == "fail"])
def test_every_denied_update_reaches_kyverno(case):
    assert kyverno_cel.webhook_matches(_stack_policy(), case.object, "UPDATE", case.old_object,
                                       case.username, subresource=case.subresource), (
        f"update case {case.name}: denied by the policy but not sent to Kyverno by matchConditions")


def test_webhook_skips_requests_without_accelerators_and_platform_namespaces():
    """Blast radius: CPU workloads and the platform's own namespaces never wait for Kyverno; every other
    namespace's accelerator requests do, so a namespace labelled kueue-managed by hand is covered
    (issue 21, finding 5: the label decides, in the rule's namespaceSelector)."""
    policy = _stack_policy()
    suite = kyverno_cel.load_suite(POLICY_DIR / ".kyverno-test" / "kyverno-test.yaml")
    by_name = {r["metadata"]["name"]: r for r in suite.resources}
    for name in ("cpu-pod", "zero-gpu-pod", "cpu-pod-with-controller-owner", "cpu-pytorchjob",
                 "nvidia-visible-devices-void-pod", "nvidia-driver-capabilities-only-pod"):
        assert not kyverno_cel.webhook_matches(policy, by_name[name], "CREATE"), (
            f"{name}: no accelerator, yet the webhook would call Kyverno (fail closed)")
    gpu = copy.deepcopy(by_name["gpu-pod-no-label"])
    for namespace, expected in (("team-a", True), ("team-b", True), ("research-hand-labelled", True),
                                ("litellm", True), ("serving", False), ("inference", False),
                                ("kserve", False), ("llm-d", False)):
        gpu["metadata"]["namespace"] = namespace
        assert kyverno_cel.webhook_matches(policy, gpu, "CREATE") is expected, (
            f"GPU pod in {namespace}: webhook match should be {expected}")
    assert policy == _load_policy(), "the stack renders the default policy: no namespace names in it"


def test_the_stacks_protected_namespaces_are_the_ones_kept_out_of_scope():
    """A stack that protects `ml-serving` keeps its own GPU servers there off SR2, and `kserve`, no longer
    protected, comes into scope like any labelled namespace (before, the default four were hard-coded)."""
    from components.kyverno import policy_manifests

    (policy,) = policy_manifests(KyvernoConfig(), ["serving", "ml-serving"])
    (rule,) = policy["spec"]["rules"]
    assert rule["exclude"]["any"][0]["resources"]["namespaces"] == ["serving", "ml-serving"]
    gpu = copy.deepcopy(next(r for r in kyverno_cel.load_suite(POLICY_DIR / ".kyverno-test" / "kyverno-test.yaml")
                             .resources if r["metadata"]["name"] == "gpu-pod-no-label"))
    for namespace, expected in (("ml-serving", False), ("serving", False), ("kserve", True), ("team-a", True)):
        gpu["metadata"]["namespace"] = namespace
        assert kyverno_cel.webhook_matches(policy, gpu, "CREATE") is expected, f"GPU pod in {namespace}"
        labelled = {namespace: {"llm-platform/kueue-managed": "true"}}  # even labelled, a protected one is out
        outcome = kyverno_cel.evaluate_rule(rule, gpu, "CREATE", "system:serviceaccount:x:y", [], labelled)
        assert outcome.result == ("fail" if expected else "skip"), (namespace, outcome)


def test_hand_labelled_namespace_is_in_scope():
    """Finding 5: a namespace that is not a stack tenant but carries the label is protected; the same
    namespace without the label is not (the rule's namespaceSelector)."""
    (rule,) = _load_policy()["spec"]["rules"]
    suite = kyverno_cel.load_suite(POLICY_DIR / ".kyverno-test" / "kyverno-test.yaml")
    gpu = copy.deepcopy(next(r for r in suite.resources if r["metadata"]["name"] == "gpu-pod-no-label"))
    gpu["metadata"]["namespace"] = "research"
    labelled = {"research": {"llm-platform/kueue-managed": "true"}}
    assert kyverno_cel.evaluate_rule(rule, gpu, "CREATE", "u", [], labelled).result == "fail"
    assert kyverno_cel.evaluate_rule(rule, gpu, "CREATE", "u", [], {"research": {}}).result == "skip"
    assert kyverno_cel.webhook_matches(_load_policy(), gpu, "CREATE")


# ------------------------------------- Kueue frameworks (issue 21, finding 4)

# Kueue chart 0.19.2 `integrations.frameworks` (charts/kueue/values.yaml): the training-operator v1 kinds are off.
KUEUE_0_19_2 = ["batch/job", "kubeflow.org/mpijob", "ray.io/rayjob", "ray.io/rayservice", "ray.io/raycluster",
                "jobset.x-k8s.io/jobset", "workload.codeflare.dev/appwrapper", "trainer.kubeflow.org/trainjob",
                "pod", "deployment", "statefulset", "leaderworkerset.x-k8s.io/leaderworkerset"]
NO_BATCH = [f for f in KUEUE_DEFAULT_FRAMEWORKS if f != "batch/job"]
NO_POD = [f for f in KUEUE_DEFAULT_FRAMEWORKS
          if f not in ("pod", "deployment", "statefulset", "leaderworkerset.x-k8s.io/leaderworkerset")]
TENANT = "alice@example.com"
TRAINING_OPERATOR = "system:serviceaccount:kubeflow:training-operator"
APPWRAPPER = "system:serviceaccount:appwrapper-system:appwrapper-controller-manager"
_GATED = {"schedulingGates": [{"name": kueue_policy.ADMISSION_GATE}]}


def _obj(api, kind, name, spec, queue=None, owner=None):
    meta = {"name": name, "namespace": "team-a"}
    if queue:
        meta["labels"] = {QUEUE_LABEL: queue}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": owner[0], "kind": owner[1], "name": "parent",
                                    "uid": "00000000-0000-0000-0000-0000000000aa", "controller": True}]
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def _tmpl(gpu=True, **extra):
    res = {"resources": {"limits": {"nvidia.com/gpu": 1}}} if gpu else {}
    return {"template": {"spec": {"containers": [{"name": "m", "image": "i", **res}], **extra}}}


def _pytorchjob(name, gpu=True, **kw):
    return _obj("kubeflow.org/v1", "PyTorchJob", name,
                {"pytorchReplicaSpecs": {"Worker": {"replicas": 2, **_tmpl(gpu)}}}, **kw)


# (id, frameworks, user, object, old object or None, expected)
FRAMEWORK_CASES = [
    ("0.19-tenant-labelled-pytorchjob", KUEUE_0_19_2, TENANT, _pytorchjob("pj", queue="q"), None, "fail"),
    ("0.19-tenant-labelled-tfjob", KUEUE_0_19_2, TENANT,
     _obj("kubeflow.org/v1", "TFJob", "tf", {"tfReplicaSpecs": {"Worker": _tmpl()}}, queue="q"), None, "fail"),
    ("0.19-tenant-cpu-pytorchjob", KUEUE_0_19_2, TENANT, _pytorchjob("pj-cpu", gpu=False), None, "pass"),
    ("0.19-appwrapper-creates-pytorchjob", KUEUE_0_19_2, APPWRAPPER,
     _pytorchjob("pj-wrapped", owner=("workload.codeflare.dev/v1beta2", "AppWrapper")), None, "pass"),
    ("0.19-training-operator-creates-wrapped-pod", KUEUE_0_19_2, TRAINING_OPERATOR,
     _obj("v1", "Pod", "pj-wrapped-worker-0", _tmpl()["template"]["spec"], owner=("kubeflow.org/v1", "PyTorchJob")),
     None, "pass"),
    ("0.19-tenant-adds-gpu-to-pytorchjob", KUEUE_0_19_2, TENANT, _pytorchjob("pj", queue="q"),
     _pytorchjob("pj", gpu=False, queue="q"), "fail"),
    ("0.19-tenant-relabels-existing-pytorchjob", KUEUE_0_19_2, TENANT, _pytorchjob("pj", queue="q2"),
     _pytorchjob("pj", queue="q"), "pass"),
    ("0.19-tenant-labelled-jobset", KUEUE_0_19_2, TENANT,
     _obj("jobset.x-k8s.io/v1alpha2", "JobSet", "js",
          {"replicatedJobs": [{"name": "w", "template": {"spec": _tmpl()}}]}, queue="q"), None, "pass"),
    ("0.18-tenant-labelled-pytorchjob", list(KUEUE_DEFAULT_FRAMEWORKS), TENANT, _pytorchjob("pj", queue="q"),
     None, "pass"),
    ("no-batch-tenant-labelled-job", NO_BATCH, TENANT, _obj("batch/v1", "Job", "j", _tmpl(), queue="q"), None, "fail"),
    ("no-batch-tenant-labelled-cronjob", NO_BATCH, TENANT,
     _obj("batch/v1", "CronJob", "cj", {"schedule": "* * * * *", "jobTemplate": {
         "metadata": {"labels": {QUEUE_LABEL: "q"}}, "spec": _tmpl()}}), None, "fail"),
    ("no-batch-jobset-controller-creates-job", NO_BATCH, "system:serviceaccount:jobset-system:jobset-controller-manager",
     _obj("batch/v1", "Job", "js-w-0", _tmpl(), owner=("jobset.x-k8s.io/v1alpha2", "JobSet")), None, "pass"),
    ("no-pod-tenant-labelled-pod-kueue-does-not-gate", NO_POD, TENANT,
     _obj("v1", "Pod", "p", _tmpl()["template"]["spec"], queue="q"), None, "fail"),
    ("no-pod-job-controller-creates-job-pod", NO_POD, "system:serviceaccount:kube-system:job-controller",
     _obj("v1", "Pod", "j-0", _tmpl()["template"]["spec"], owner=("batch/v1", "Job")), None, "pass"),
    ("no-pod-tenant-labelled-gated-pod", NO_POD, TENANT,
     _obj("v1", "Pod", "p2", _tmpl(**_GATED)["template"]["spec"], queue="q"), None, "pass"),
]


def _framework_rule(frameworks: list[str], drop: int = -1) -> dict:
    policy = kueue_policy.render_policy(KyvernoConfig.model_validate({"kueue": {"frameworks": frameworks}}))
    (rule,) = policy["spec"]["rules"]
    if drop >= 0:
        rule["validate"]["cel"]["expressions"][drop]["expression"] = "true"
    return rule


def _framework_outcome(rule: dict, c: tuple) -> str:
    _, _, user, obj, old, _ = c
    op = "CREATE" if old is None else "UPDATE"
    return kyverno_cel.evaluate_rule(rule, obj, op, user, [], NS_LABELS, old=old).result


@pytest.mark.parametrize("c", FRAMEWORK_CASES, ids=[c[0] for c in FRAMEWORK_CASES])
def test_kueue_frameworks_decide_what_is_trusted(c):
    """Only enabled Kueue frameworks are parents; accelerated objects of the others are denied unless an
    enabled parent owns them (a PyTorchJob inside an AppWrapper, and its pods, stay admitted)."""
    assert _framework_outcome(_framework_rule(c[1]), c) == c[5], c[0]


def test_default_frameworks_are_kueue_0_18_1_chart_defaults():
    assert KyvernoConfig().kueue.frameworks == list(KUEUE_DEFAULT_FRAMEWORKS)
    assert "kubeflow.org/pytorchjob" in KUEUE_DEFAULT_FRAMEWORKS
    assert "sparkoperator.k8s.io/sparkapplication" not in KUEUE_DEFAULT_FRAMEWORKS
    variables = {v["name"]: v["expression"] for v in _load_policy()["spec"]["rules"][0]["validate"]["cel"]["variables"]}
    assert variables["disabledKinds"] == "[]"


@pytest.mark.parametrize("kyverno,needle", [
    ({"kueue": {"frameworks": ["batch/job", "kubeflow.org/mxjob"]}}, "kyverno.kueue.frameworks"),
    ({"kueue": {"frameworks": ["pod", "pod"]}}, "kyverno.kueue.frameworks"),
    ({"kueue": {"framework": ["pod"]}}, "kyverno.kueue.framework"),
    ({"acceleratorResourcePatterns": ["nvidia.com/mig"]}, "kyverno.acceleratorResourcePatterns"),
    ({"acceleratorResourcePatterns": ["*"]}, "kyverno.acceleratorResourcePatterns"),
])
def test_bad_kueue_config_is_one_clear_error(kyverno, needle):
    raw = {"gcp:project": "proj-1",
           "llm-platform:cluster": json.dumps({"name": "c1", "location": "europe-west4-a",
                                               "nodePools": [{"name": "system"}]}),
           "llm-platform:kyverno": json.dumps(kyverno)}
    with pytest.raises(ConfigError) as err:
        parse(raw, "dev")
    assert f"`llm-platform:{needle}" in str(err.value) and "more problem" not in str(err.value), str(err.value)


# ------------------------------------------------- rendering and config

def test_folder_copy_is_the_default_rendering():
    assert POLICY_FILE.read_text(encoding="utf-8") == kueue_policy.default_rendering(), (
        f"{POLICY_FILE.relative_to(ROOT)} is stale: run .venv/bin/python -m components.kueue_policy")


def test_stack_rendering_follows_config():
    config = KyvernoConfig.model_validate({
        "acceleratorResources": ["nvidia.com/gpu", "amd.com/gpu"],
        "acceleratorResourcePatterns": ["nvidia.com/mig-*"],
        "trustedControllers": {"kuberay": "system:serviceaccount:ray:ray-operator"},
    })
    policy = kueue_policy.render_policy(config)
    text = yaml_io.dump(policy)
    assert "amd.com/gpu" in text and "google.com/tpu" not in text, "acceleratorResources not applied"
    assert "system:serviceaccount:ray:ray-operator" in text
    assert "kuberay-system:kuberay-operator" not in text, "a replaced identity must not stay trusted"
    (rule,) = policy["spec"]["rules"]
    amd = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "team-x"},
           "spec": {"containers": [{"name": "c", "resources": {"limits": {"amd.com/gpu": 1}}}]}}
    ns = {"team-x": {"llm-platform/kueue-managed": "true"}}
    assert kyverno_cel.evaluate_rule(rule, amd, "CREATE", "u", [], ns).result == "fail"
    assert kyverno_cel.webhook_matches(policy, amd, "CREATE")
    ray_pod = copy.deepcopy(amd)
    ray_pod["metadata"]["ownerReferences"] = [{"apiVersion": "ray.io/v1", "kind": "RayCluster", "name": "r",
                                               "uid": "1", "controller": True}]
    assert kyverno_cel.evaluate_rule(rule, ray_pod, "CREATE", "system:serviceaccount:ray:ray-operator", [],
                                     ns).result == "pass"
    assert kyverno_cel.evaluate_rule(rule, ray_pod, "CREATE", "system:serviceaccount:kuberay-system:kuberay-operator",
                                     [], ns).result == "fail"
    conditions = {c["name"]: c["expression"] for c in policy["spec"]["webhookConfiguration"]["matchConditions"]}
    assert set(conditions) == {"not-platform-namespace", "accelerator-request"}, conditions


def test_resource_claims_through_kueue_switch():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "team-a"},
           "spec": {"containers": [{"name": "c", "resources": {"claims": [{"name": "gpu"}]}}],
                    "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "t"}],
                    "schedulingGates": [{"name": kueue_policy.ADMISSION_GATE}]}}
    (rule,) = kueue_policy.render_policy(KyvernoConfig(resource_claims_through_kueue=True))["spec"]["rules"]
    assert kyverno_cel.evaluate_rule(rule, pod, "CREATE", "u", [], NS_LABELS).result == "fail", "claims need the label"
    pod["metadata"]["labels"] = {QUEUE_LABEL: "team-a-gpu"}
    assert kyverno_cel.evaluate_rule(rule, pod, "CREATE", "u", [], NS_LABELS).result == "pass"
    (strict,) = _load_policy()["spec"]["rules"]
    assert kyverno_cel.evaluate_rule(strict, pod, "CREATE", "u", [], NS_LABELS).result == "fail", (
        "default: DRA claims denied even with the label")


def test_one_table_per_concern():
    """Adding a Kueue integration is one WORKLOADS row: every row reaches match kinds and dispatches."""
    policy = _load_policy()
    (rule,) = policy["spec"]["rules"]
    kinds = rule["match"]["any"][0]["resources"]["kinds"]
    variables = {v["name"]: v["expression"] for v in rule["validate"]["cel"]["variables"]}
    for w in kueue_policy.WORKLOADS:
        assert w.match in kinds, w.key
        assert f"'{w.key}'" in variables["podSpecs"], w.key
    trusted = json.loads(variables["trustedControllers"])  # a parameter: a JSON literal (policy_model)
    for e in kueue_policy.TRUST:
        assert f"{e.child}<-{e.owner}" in trusted[getattr(KyvernoConfig().trusted_controllers, e.controller)], e


# ------------------------------------------------------------ CRD schema

def _chart_dir() -> Path:
    return chart_dir()


def _find_crd(chart_dir: Path) -> Path:
    for candidate in (chart_dir / "crds" / "kyverno.io_clusterpolicies.yaml",
                      chart_dir / "kyverno.io_clusterpolicies.yaml"):
        if candidate.is_file():
            return candidate
    found = sorted(chart_dir.rglob("kyverno.io_clusterpolicies.yaml"))
    if not found:
        pytest.fail(f"{chart_dir} has no kyverno.io_clusterpolicies.yaml")
    return found[0]


@pytest.fixture(scope="module")
def clusterpolicy_schema() -> dict:
    crd_file = _find_crd(_chart_dir())
    crd = kyverno_chart.parsed(crd_file)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def _schema_errors(schema: dict, document: dict) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)]


def test_policy_matches_clusterpolicy_crd_schema(clusterpolicy_schema):
    errors = _schema_errors(clusterpolicy_schema, _load_policy())
    assert not errors, "\n".join(errors)


def test_crd_schema_check_detects_errors(clusterpolicy_schema):
    broken = copy.deepcopy(_load_policy())
    broken["spec"]["webhookConfiguration"]["failurePolicy"] = "Sometimes"
    broken["spec"]["rules"][0]["match"]["any"][0]["resources"]["operations"] = ["PATCH"]
    errors = _schema_errors(clusterpolicy_schema, broken)
    assert any("failurePolicy" in e for e in errors), errors
    assert any("operations" in e for e in errors), errors


# ------------------------------------------------ evaluator is loud on gaps

def _suite_with_policy(policy: dict) -> kyverno_cel.TestSuite:
    return kyverno_cel.TestSuite(POLICY_DIR, [policy], [], {}, {}, "", [])


def test_rejects_policy_with_autogen_enabled():
    policy = copy.deepcopy(_load_policy())
    del policy["metadata"]["annotations"][kyverno_cel.AUTOGEN_ANNOTATION]
    with pytest.raises(kyverno_cel.UnsupportedPolicyError, match="autogen-controllers"):
        kyverno_cel.check_policy_supported(policy)
    policy["metadata"]["annotations"][kyverno_cel.AUTOGEN_ANNOTATION] = "Deployment,Job"
    with pytest.raises(kyverno_cel.UnsupportedPolicyError, match="autogen-controllers"):
        kyverno_cel.check_policy_supported(policy)


def test_rejects_unsupported_match_selector():
    policy = copy.deepcopy(_load_policy())
    policy["spec"]["rules"][0]["match"]["any"][0]["resources"]["selector"] = {
        "matchLabels": {"app": "x"}}
    with pytest.raises(kyverno_cel.UnsupportedPolicyError, match=r"resources\.selector"):
        kyverno_cel.check_policy_supported(policy)


@pytest.mark.parametrize("mutate,field", [
    (lambda r: r.__setitem__("preconditions", {"all": []}), "preconditions"),
    (lambda r: r.__setitem__("context", []), "context"),
    (lambda r: r["match"]["any"][0].__setitem__("subjects", []), "subjects"),
    (lambda r: r["validate"]["cel"]["expressions"][0].__setitem__("messageExpression", "'x'"),
     "messageExpression"),
    (lambda r: r["match"]["any"][0]["resources"]["namespaceSelector"].__setitem__(
        "matchExpressions", []), "matchExpressions"),
])
def test_rejects_other_unsupported_constructs(mutate, field):
    policy = copy.deepcopy(_load_policy())
    mutate(policy["spec"]["rules"][0])
    with pytest.raises(kyverno_cel.UnsupportedPolicyError, match=field):
        kyverno_cel.check_policy_supported(policy)


def test_cel_errors_are_reported_not_hidden():
    policy = copy.deepcopy(_load_policy())
    rule = policy["spec"]["rules"][0]
    rule["validate"]["cel"]["expressions"] = [
        {"expression": "object.spec.doesNotExist == 1", "message": QUEUE_LABEL}]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "team-a"}, "spec": {"containers": []}}
    outcome = kyverno_cel.evaluate_rule(
        rule, pod, "CREATE", "", [], {"team-a": {"llm-platform/kueue-managed": "true"}})
    assert outcome.result == "fail" and outcome.error, outcome


@pytest.mark.parametrize("where", ["variable", "expression", "matchCondition"])
@pytest.mark.parametrize("expression", ["quantity('1') == quantity('1')", "isSorted([1, 2])",
                                        "url('https://x.example').getHost() == 'x.example'",
                                        "ip('10.0.0.1').family() == 4", "undefinedFunction(object)"])
def test_unknown_cel_functions_fail_loudly(where, expression):
    """Kubernetes CEL libraries cel-expr-python lacks (quantity, lists, ...) must not silently pass."""
    policy = copy.deepcopy(_load_policy())
    cel_block = policy["spec"]["rules"][0]["validate"]["cel"]
    if where == "variable":
        cel_block["variables"].append({"name": "extra", "expression": expression})
    elif where == "expression":
        cel_block["expressions"].append({"expression": expression, "message": QUEUE_LABEL})
    else:
        policy["spec"]["webhookConfiguration"]["matchConditions"].append({"name": "x", "expression": expression})
    with pytest.raises(kyverno_cel.UnsupportedPolicyError, match="does not compile"):
        kyverno_cel.check_policy_supported(policy)


@pytest.mark.parametrize("mutate,field", [
    (lambda p: p["spec"]["webhookConfiguration"].__setitem__("namespaceSelector", {}), "namespaceSelector"),
    (lambda p: p["spec"]["webhookConfiguration"]["matchConditions"].append(
        {"name": "a", "expression": "authorizer.group('').resource('pods').check('create').allowed()"}),
     "authorizer"),
])
def test_rejects_unsupported_webhook_settings(mutate, field):
    policy = copy.deepcopy(_load_policy())
    mutate(policy)
    with pytest.raises(kyverno_cel.UnsupportedPolicyError, match=field):
        kyverno_cel.check_policy_supported(policy)


# ----------------------------------------------------------- policy shape

def test_failure_messages_say_what_to_add():
    policy = _load_policy()
    for rule in policy["spec"]["rules"]:
        assert QUEUE_LABEL in rule["validate"]["message"], rule["name"]
        for exp in rule["validate"]["cel"]["expressions"]:
            assert QUEUE_LABEL in exp.get("message", ""), rule["name"]


def test_policy_settings():
    policy = _load_policy()
    annotations = policy["metadata"]["annotations"]
    for key in ("policies.kyverno.io/title", "policies.kyverno.io/category",
                "policies.kyverno.io/severity", "policies.kyverno.io/subject",
                "policies.kyverno.io/description", "kyverno.io/k8s-version"):
        assert annotations.get(key), key
    assert annotations["kyverno.io/kyverno-version"] == "1.18.1"
    assert annotations[kyverno_cel.AUTOGEN_ANNOTATION] == "none"
    spec = policy["spec"]
    assert spec["validationFailureAction"] in ("Audit", "Enforce")
    uses_userinfo = any(
        "request.userInfo" in v["expression"]
        for r in spec["rules"] for v in r["validate"]["cel"].get("variables", []))
    assert uses_userinfo and spec["background"] is False
    assert spec["webhookConfiguration"]["failurePolicy"] == "Fail"
    assert 1 <= spec["webhookConfiguration"]["timeoutSeconds"] <= 30
    # matchConditions make Kyverno build a fine-grained webhook for this policy (docs/decisions/0002)
    assert spec["webhookConfiguration"]["matchConditions"], "blast radius: matchConditions required"
    for rule in spec["rules"]:
        excluded = {n for f in rule["exclude"]["any"] for n in f["resources"].get("namespaces", [])}
        assert "serving" in excluded, rule["name"]
        for flt in rule["match"]["any"]:
            assert flt["resources"]["namespaceSelector"]["matchLabels"] == {
                "llm-platform/kueue-managed": "true"}, rule["name"]
            assert set(flt["resources"]["operations"]) == {"CREATE", "UPDATE"}, rule["name"]


@pytest.mark.parametrize("index", range(10))
def test_every_expression_is_needed_by_some_case(index):
    """Mutation check: replacing any one validation expression by `true` breaks some case."""
    policy = copy.deepcopy(_load_policy())
    (rule,) = policy["spec"]["rules"]
    assert len(rule["validate"]["cel"]["expressions"]) == 10
    removed = rule["validate"]["cel"]["expressions"][index]["expression"]
    rule["validate"]["cel"]["expressions"][index]["expression"] = "true"
    def broken():  # the first case that notices (stops there: make test stays fast)
        for param in CASES:
            suite, case = param.values
            weakened = kyverno_cel.TestSuite(suite.path, [policy], suite.resources, suite.namespace_labels,
                                             suite.operations, suite.username, suite.groups,
                                             subresources=suite.subresources)
            if case.expected == "fail" and kyverno_cel.evaluate_case(weakened, case).result != case.expected:
                return case.resource
        for param in UPDATE_CASES:
            c = param.values[0]
            if c.expected == "fail" and kyverno_cel.evaluate_rule(
                    rule, c.object, c.operation, c.username, [], NS_LABELS, old=c.old_object,
                    subresource=c.subresource).result != c.expected:
                return c.name
        # the framework expressions need a non-default kyverno.kueue.frameworks
        return next((fc[0] for fc in FRAMEWORK_CASES
                     if _framework_outcome(_framework_rule(fc[1], index), fc) != fc[5]), None)
    assert broken(), f"no case notices when `{removed}` is dropped"


_CHILDREN = {"/Pod": "pod", "batch/Job": "job", "apps/StatefulSet": "statefulset", "ray.io/RayCluster": "raycluster",
             "jobset.x-k8s.io/JobSet": "jobset", "*": "job"}
_PARENT_EDGES = [e for e in kueue_policy.TRUST
                 if any(w.key == e.owner and w.kueue_parent for w in kueue_policy.WORKLOADS)]


def _child(key: str, owner: tuple[str, str]) -> dict:
    build = {"pod": ko.pod, "job": ko.job, "raycluster": ko.raycluster, "jobset": ko.jobset,
             "statefulset": lambda name, **kw: ko.apps("StatefulSet", name, **kw)}[_CHILDREN[key]]
    return build("child", owner=owner)


@pytest.mark.parametrize("edge", _PARENT_EDGES, ids=lambda e: f"{e.child}<-{e.owner}")
def test_parents_are_kueue_parents_only_at_kueues_version(edge):
    """Owner version: an unlabelled GPU child from the edge's controller is admitted when its controller owner
    has the apiVersion of Kueue's integration (WORKLOADS `version`), and needs the label (and, for a Pod,
    Kueue's gate) when the owner has any other version of the same kind: Kueue does not know that owner."""
    (rule,) = _load_policy()["spec"]["rules"]
    (w,) = [w for w in kueue_policy.WORKLOADS if w.key == edge.owner]
    api_version, _, kind = w.parent_id.rpartition("/")
    user = getattr(kueue_policy.TrustedControllers(), edge.controller)
    group = api_version.rpartition("/")[0]
    for version, expected in ((api_version, "pass"), ((group + "/" if group else "") + "v0alpha0", "fail")):
        child = _child(edge.child, (version, kind))
        outcome = kyverno_cel.evaluate_rule(rule, child, "CREATE", user, [], NS_LABELS)
        assert outcome.result == expected, (version, kind, outcome.message)


# ------------------------------- ValidatingPolicy rendering (Kyverno >= 1.20)

@functools.lru_cache(maxsize=1)
def _validating_policy_file() -> dict:
    (policy,) = kyverno_cel.load_yaml_docs(kueue_policy.VALIDATING_POLICY_FILE)
    return policy


def _load_validating_policy() -> dict:
    return copy.deepcopy(_validating_policy_file())


def test_validating_policy_folder_copy_is_the_default_rendering():
    assert kueue_policy.VALIDATING_POLICY_FILE.read_text(encoding="utf-8") == \
        kueue_policy.default_validating_policy_rendering(), (
            f"{kueue_policy.VALIDATING_POLICY_FILE.relative_to(ROOT)} is stale: run "
            ".venv/bin/python -m components.kueue_policy")


def test_validating_policy_matches_its_crd_schema():
    """Against the vendored policies.kyverno.io CRD (v1 is served from Kyverno 1.18.1 on)."""
    crd = kyverno_chart.parsed(ROOT / "vendor" / "kyverno" / "3.8.1" / "crds" /
                               "policies.kyverno.io_validatingpolicies.yaml")
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    errors = _schema_errors(version["schema"]["openAPIV3Schema"], _load_validating_policy())
    assert not errors, "\n".join(errors)
    broken = copy.deepcopy(_load_validating_policy())
    broken["spec"]["failurePolicy"] = "Sometimes"
    assert _schema_errors(version["schema"]["openAPIV3Schema"], broken), "schema check must detect errors"


@pytest.mark.parametrize("suite,case", CASES)
def test_validating_policy_decides_like_the_cluster_policy(suite, case):
    req = kyverno_eval.case_request(suite, case)
    outcome = kyverno_cel.evaluate_validating_policy(_load_validating_policy(), req.resource, req.operation,
                                                      suite.username, suite.namespace_labels,
                                                      subresource=req.subresource)
    assert not outcome.error, outcome.message
    assert (outcome.result == "fail") == (case.expected == "fail"), (
        f"ValidatingPolicy on {case.kind}/{case.resource} (user {suite.username}): {outcome.result}, "
        f"ClusterPolicy case expects {case.expected}; {outcome.message}")


@pytest.mark.parametrize("case", UPDATE_CASES)
def test_validating_policy_decides_updates_like_the_cluster_policy(case):
    outcome = kyverno_cel.evaluate_validating_policy(
        _load_validating_policy(), case.object, case.operation, case.username, NS_LABELS,
        old=case.old_object, subresource=case.subresource)
    assert (outcome.result == "fail") == (case.expected == "fail"), (
        f"ValidatingPolicy on update case {case.name}: {outcome.result}, expected {case.expected}")
