"""One policy model (components/policy_model.py): the file is the policy, the stack sets its parameters.

SR2's file is written by its generator (components/kueue_policy.py); the stack loads the file and sets the
parameters, never calling the generator. The proof that nothing config-dependent escapes the parameters: for a
spread of configs, the stack's policy equals the generator's output for that config, as whole documents.
"""

from __future__ import annotations

import copy

import pytest

from components import kueue_policy, kyverno, policy_model
from components.config import KyvernoConfig
from components.platform_facts import DEFAULT_PROTECTED_NAMESPACES

CONFIGS = {
    "default": ({}, DEFAULT_PROTECTED_NAMESPACES),
    "other-accelerators": ({"acceleratorResources": ["amd.com/gpu", "nvidia.com/gpu"],
                            "acceleratorResourcePatterns": ["amd.com/gpu-*"]}, DEFAULT_PROTECTED_NAMESPACES),
    "no-patterns": ({"acceleratorResourcePatterns": []}, DEFAULT_PROTECTED_NAMESPACES),
    "other-controllers": ({"trustedControllers": {"kuberay": "system:serviceaccount:ray:ray-operator",
                                                  "kueue": "system:serviceaccount:kq:kueue-manager",
                                                  "job": "system:serviceaccount:kube-system:my-job-controller"}},
                          DEFAULT_PROTECTED_NAMESPACES),
    "frameworks-subset": ({"kueue": {"frameworks": ["batch/job", "ray.io/rayjob"]}}, DEFAULT_PROTECTED_NAMESPACES),
    "claims-through-kueue": ({"resourceClaimsThroughKueue": True}, DEFAULT_PROTECTED_NAMESPACES),
    "other-platform-namespaces": ({}, ("serving", "ml-serving")),
    "audit": ({"failureAction": "Audit"}, DEFAULT_PROTECTED_NAMESPACES),
    "everything": ({"acceleratorResources": ["amd.com/gpu"], "acceleratorResourcePatterns": ["amd.com/mi-*"],
                    "trustedControllers": {"lws": "system:serviceaccount:lws:lws"},
                    "kueue": {"frameworks": ["pod", "jobset.x-k8s.io/jobset"]},
                    "resourceClaimsThroughKueue": True, "failureAction": "Audit"}, ("inference", "kserve")),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_stack_policy_is_the_generators_output(name):
    """Whole-document equality: the file plus parameters is what the generator writes for this config."""
    raw, namespaces = CONFIGS[name]
    config = KyvernoConfig.model_validate(raw)
    stack = kyverno.sr2_policy(config, namespaces)
    assert stack == kueue_policy.render_policy(config, namespaces), (
        f"{name}: the stack's SR2 (file + parameters) differs from the generator's; a config-dependent part of "
        "kueue_policy.render_policy is not a parameter")
    if name != "default":  # the parameters did change something: the comparison is not file == file
        assert stack != policy_model.load_policy(kueue_policy.POLICY_NAME), name


def test_stack_never_calls_the_generator(monkeypatch):
    def generator(*_args, **_kwargs):
        raise AssertionError("the stack called kueue_policy.render_policy")

    monkeypatch.setattr(kueue_policy, "render_policy", generator)
    (policy,) = kyverno.policy_manifests(KyvernoConfig.model_validate({"failureAction": "Audit"}))
    assert policy["metadata"]["name"] == kueue_policy.POLICY_NAME
    assert policy["spec"]["validationFailureAction"] == "Audit"


def test_the_file_names_no_config_value():
    """The description and every other non-parameter text of the file hold no value the config can change."""
    config = KyvernoConfig.model_validate(CONFIGS["everything"][0])
    policy = policy_model.load_policy(kueue_policy.POLICY_NAME)
    (rule,) = policy["spec"]["rules"]
    params = set(kueue_policy.parameters(config))
    conditions = set(kueue_policy.match_conditions(config, ["serving"]))
    fixed = copy.deepcopy(policy)
    fixed["spec"]["rules"][0]["validate"]["cel"]["variables"] = [
        v for v in rule["validate"]["cel"]["variables"] if v["name"] not in params]
    fixed["spec"]["webhookConfiguration"]["matchConditions"] = [
        c for c in policy["spec"]["webhookConfiguration"]["matchConditions"] if c["name"] not in conditions]
    fixed["spec"]["rules"][0].pop("exclude")
    fixed["spec"].pop("validationFailureAction")
    text = repr(fixed)
    for value in ("nvidia.com/gpu", "google.com/tpu", "nvidia.com/mig-", "kueue-controller-manager",
                  "kuberay-operator", *DEFAULT_PROTECTED_NAMESPACES):
        assert value not in text, f"{value!r} is written outside the policy's parameters"


def _policy() -> dict:
    return {"metadata": {"name": "p"}, "spec": {
        "webhookConfiguration": {"matchConditions": [{"name": "in-scope", "expression": "true"}]},
        "rules": [{"name": "r", "match": {"any": [{"resources": {"kinds": ["Pod"], "namespaces": ["a"]}}]},
                   "validate": {"cel": {"variables": [{"name": "limit", "expression": "1"}],
                                        "expressions": [{"expression": "variables.limit > 0"}]}}},
                  {"name": "m", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]}, "mutate": {}}]}}


def test_unknown_names_are_errors():
    with pytest.raises(KeyError, match=r"p: no CEL variable named \['limits'\]"):
        policy_model.set_params(_policy(), {"limits": 2})
    with pytest.raises(KeyError, match=r"p: no webhook matchCondition named \['in-scop'\]"):
        policy_model.set_match_conditions(_policy(), {"in-scop": "false"})


def test_setters_change_only_their_part_and_copy():
    original = _policy()
    policy = policy_model.apply(original, params={"limit": [1, "x"]}, match_conditions={"in-scope": "false"},
                                exclude=["kube-system"], failure_action="Enforce")
    assert original == _policy(), "the loaded policy is not modified in place"
    (var,) = policy["spec"]["rules"][0]["validate"]["cel"]["variables"]
    assert var["expression"] == '[1, "x"]'
    assert policy["spec"]["webhookConfiguration"]["matchConditions"] == [{"name": "in-scope", "expression": "false"}]
    assert all(r["exclude"] == {"any": [{"resources": {"namespaces": ["kube-system"]}}]} for r in policy["spec"]["rules"])
    assert "exclude" not in policy_model.set_exclude(policy, [])["spec"]["rules"][0]
    # Declared nowhere: the spec-level field.
    assert policy["spec"]["validationFailureAction"] == "Enforce"
    assert "failureAction" not in policy["spec"]["rules"][0]["validate"]


def test_failure_action_follows_where_the_policy_declares_it():
    per_rule = _policy()
    per_rule["spec"]["rules"][0]["validate"]["failureAction"] = "Audit"
    per_rule["spec"]["rules"].append(copy.deepcopy(_policy()["spec"]["rules"][0]))  # a rule that declares none
    got = policy_model.set_failure_action(per_rule, "Enforce")
    assert [r["validate"]["failureAction"] for r in got["spec"]["rules"] if "validate" in r] == ["Enforce", "Enforce"]
    assert "validationFailureAction" not in got["spec"], "a per-rule policy gets no spec-level action"
    spec_level = _policy()
    spec_level["spec"]["validationFailureAction"] = "Enforce"
    assert policy_model.set_failure_action(spec_level, "Audit")["spec"]["validationFailureAction"] == "Audit"


def test_every_loader_reads_the_policy_folder():
    from components import guardrails, tenant_boundaries, workload_isolation

    assert policy_model.policy_file(workload_isolation.AGENT_POLICY) == workload_isolation.AGENT_POLICY_FILE
    for module in (guardrails, tenant_boundaries):
        assert module.policy_file is policy_model.policy_file and module.POLICY_DIR == policy_model.POLICY_DIR
    assert guardrails.load_policy is policy_model.load_policy


def test_a_literal_keeps_characters_beyond_the_basic_plane_whole():
    """JSON's default ASCII escapes write such a character as a surrogate pair, which CEL refuses ("invalid unicode
    code point"); the literal carries the character itself, and CEL reads back the same string."""
    from tools import kyverno_eval

    literal = policy_model.cel_literal(["\U0001F600bob", 'a"b', "c'd\\e"])
    assert "\\ud83d" not in literal and "\U0001F600" in literal
    assert kyverno_eval.compile_expr(literal).eval(data={}).plain_value() == ["\U0001F600bob", 'a"b', "c'd\\e"]


@pytest.mark.parametrize("config", [
    {"acceleratorResources": ["nvidia.com/gpu\n"]},
    {"acceleratorResourcePatterns": ["example.com/*\n"]},
    {"trustedControllers": {"kueue": "system:serviceaccount:kueue-system:kueue-controller-manager\n"}},
])
def test_a_trailing_newline_is_not_a_valid_name(config):
    # `$` also matches before a final newline: the validators match whole strings.
    with pytest.raises(ValueError):
        KyvernoConfig.model_validate(config)
