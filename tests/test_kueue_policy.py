"""Tests for the SR2 Kyverno policy require-kueue-queue-name.

Every kyverno-test.yaml case below the policy folder is evaluated with real CEL
(cel-expr-python) by tests/kyverno_cel.py; the policy is validated against the
ClusterPolicy CRD schema of Kyverno v1.18.1 when KYVERNO_CHART_DIR is set.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kyverno_cel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
POLICY_DIR = ROOT / "policies" / "kyverno" / "require-kueue-queue-name"
POLICY_FILE = POLICY_DIR / "require-kueue-queue-name.yaml"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def _load_policy() -> dict:
    (policy,) = kyverno_cel.load_yaml_docs(POLICY_FILE)
    return policy


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


def test_enough_cases_and_parents_covered():
    kinds = {p.values[1].kind for p in CASES}
    results = {p.values[1].expected for p in CASES}
    assert len(CASES) >= 15, f"only {len(CASES)} kyverno-test cases"
    assert {"Job", "CronJob", "JobSet", "RayJob", "RayCluster", "Deployment",
            "StatefulSet", "LeaderWorkerSet"} <= kinds, kinds
    assert results == {"pass", "fail", "skip"}, results
    # the sub-folders (one request user each) are part of the run
    assert len(kyverno_cel.discover_test_files(POLICY_DIR)) > 1


@pytest.mark.parametrize("suite,case", CASES)
def test_kyverno_case(suite, case):
    outcome = kyverno_cel.evaluate_case(suite, case)
    assert outcome.result == case.expected, (
        f"resource {case.kind}/{case.resource} rule {case.rule} "
        f"(user {suite.username or '<none>'}, {suite.path.relative_to(ROOT)}): "
        f"expected {case.expected}, got {outcome.result}; message: {outcome.message}")
    if outcome.result == "fail":
        assert QUEUE_LABEL in outcome.message, outcome.message


# ------------------------------------------------------------ CRD schema

def _chart_dir() -> Path:
    value = os.environ.get("KYVERNO_CHART_DIR")
    if not value:
        pytest.skip(
            "KYVERNO_CHART_DIR is not set. Point it at a directory holding "
            "crds/kyverno.io_clusterpolicies.yaml of Kyverno v1.18.1, e.g. the "
            "project's ../shared/kyverno/3.8.1, or fetch the same files from "
            "github.com/kyverno/kyverno tag v1.18.1 (config/crds/**, file "
            "kyverno.io_clusterpolicies.yaml) or from the Helm chart kyverno 3.8.1 "
            "(helm pull kyverno/kyverno --version 3.8.1 --untar, then render its "
            "crds / kyverno-api subcharts) and copy the file into <dir>/crds/")
    return Path(value)


def _find_crd(chart_dir: Path) -> Path:
    for candidate in (chart_dir / "crds" / "kyverno.io_clusterpolicies.yaml",
                      chart_dir / "kyverno.io_clusterpolicies.yaml"):
        if candidate.is_file():
            return candidate
    found = sorted(chart_dir.rglob("kyverno.io_clusterpolicies.yaml"))
    if not found:
        pytest.fail(f"KYVERNO_CHART_DIR={chart_dir} has no kyverno.io_clusterpolicies.yaml")
    return found[0]


@pytest.fixture(scope="module")
def clusterpolicy_schema() -> dict:
    crd_file = _find_crd(_chart_dir())
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(crd_file) as fh:
        crd = yaml.load(fh, Loader=loader)
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
    assert outcome.result == "error", outcome


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
    for rule in spec["rules"]:
        excluded = {n for f in rule["exclude"]["any"] for n in f["resources"].get("namespaces", [])}
        assert "serving" in excluded, rule["name"]
        for flt in rule["match"]["any"]:
            assert flt["resources"]["namespaceSelector"]["matchLabels"] == {
                "llm-platform/kueue-managed": "true"}, rule["name"]
