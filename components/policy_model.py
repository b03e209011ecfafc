"""One policy model: a Kyverno policy is its folder's YAML file; a stack's policy is that file with typed
parameters applied here.

``policies/kyverno/<name>/<name>.yaml`` is the policy (what ``kyverno test`` runs against its
``.kyverno-test/`` suites). The stack never builds a policy another way: it loads the file with
:func:`load_policy` and sets its parameters, structurally (never by editing text):

* CEL variables by name -> CEL literals (:func:`set_params`);
* scope: the namespaces and selectors of every match filter (:func:`set_scope`);
* failure action, Audit or Enforce (:func:`set_failure_action`);
* excluded namespaces (:func:`set_exclude`);
* webhook matchConditions by name -> an expression built by the policy's own function
  (:func:`set_match_conditions`).

A generated file (SR2's ``require-kueue-queue-name``, written by ``python -m components.kueue_policy``) is a
policy file like the others: its generator writes it, nobody edits it by hand, and the stack never calls
the generator. Naming a variable or matchCondition the file does not have is an error.
"""

from __future__ import annotations

import copy
import json
import pathlib
from typing import Any, Mapping, Optional, Sequence

from components import yaml_io

ROOT = pathlib.Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "policies" / "kyverno"


def policy_file(name: str) -> pathlib.Path:
    """The policy's file: one folder per policy, named like the policy."""
    return POLICY_DIR / name / f"{name}.yaml"


def load_policy(name: str) -> dict[str, Any]:
    with policy_file(name).open(encoding="utf-8") as fh:
        return yaml_io.load(fh)


def cel_literal(value: Any) -> str:
    """A CEL literal for a JSON-like value (JSON is valid CEL for strings, numbers, bools, lists, maps)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def set_params(policy: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Replace the expression of every CEL variable named in `params` (in every rule) with its literal."""
    policy = copy.deepcopy(policy)
    seen: set[str] = set()
    for rule in policy["spec"]["rules"]:
        for var in rule.get("validate", {}).get("cel", {}).get("variables", []):
            if var["name"] in params:
                var["expression"] = cel_literal(params[var["name"]])
                seen.add(var["name"])
    missing = set(params) - seen
    if missing:
        raise KeyError(f"{policy['metadata']['name']}: no CEL variable named {sorted(missing)}")
    return policy


def set_match_conditions(policy: dict[str, Any], expressions: Mapping[str, str]) -> dict[str, Any]:
    """Replace the expression of every webhook matchCondition named in `expressions`."""
    policy = copy.deepcopy(policy)
    conditions = policy["spec"].get("webhookConfiguration", {}).get("matchConditions", [])
    seen: set[str] = set()
    for cond in conditions:
        if cond["name"] in expressions:
            cond["expression"] = expressions[cond["name"]]
            seen.add(cond["name"])
    missing = set(expressions) - seen
    if missing:
        raise KeyError(f"{policy['metadata']['name']}: no webhook matchCondition named {sorted(missing)}")
    return policy


def set_scope(policy: dict[str, Any], namespaces: Sequence[str], namespace_selector: Mapping[str, str],
              object_selector: Mapping[str, str]) -> dict[str, Any]:
    """Scope every match filter: these namespaces, and the selectors when given."""
    policy = copy.deepcopy(policy)
    for rule in policy["spec"]["rules"]:
        for flt in rule["match"].get("any", []) + rule["match"].get("all", []):
            res = flt["resources"]
            res["namespaces"] = list(namespaces)
            res.pop("namespaceSelector", None)
            res.pop("selector", None)
            if namespace_selector:
                res["namespaceSelector"] = {"matchLabels": dict(namespace_selector)}
            if object_selector:
                res["selector"] = {"matchLabels": dict(object_selector)}
    return policy


def set_failure_action(policy: dict[str, Any], action: str) -> dict[str, Any]:
    """Set Enforce/Audit where the policy declares it: the spec-level field, and, when any rule declares its
    own, every validate rule's (so a rule added without one cannot fall back to Kyverno's default). A policy
    that declares it nowhere gets the spec-level field."""
    policy = copy.deepcopy(policy)
    spec = policy["spec"]
    validates = [r["validate"] for r in spec.get("rules", []) if "validate" in r]
    per_rule = any("failureAction" in v for v in validates)
    if per_rule:
        for validate in validates:
            validate["failureAction"] = action
    if "validationFailureAction" in spec or not per_rule:
        spec["validationFailureAction"] = action
    return policy


def set_exclude(policy: dict[str, Any], namespaces: Sequence[str]) -> dict[str, Any]:
    """Every rule excludes these namespaces (none: no exclude block)."""
    policy = copy.deepcopy(policy)
    for rule in policy["spec"]["rules"]:
        rule.pop("exclude", None)
        if namespaces:
            rule["exclude"] = {"any": [{"resources": {"namespaces": list(namespaces)}}]}
    return policy


def apply(policy: dict[str, Any], *, params: Optional[Mapping[str, Any]] = None,
          match_conditions: Optional[Mapping[str, str]] = None, exclude: Optional[Sequence[str]] = None,
          failure_action: Optional[str] = None) -> dict[str, Any]:
    """The parameters a stack gives a policy, in one call (None: the file's own)."""
    if params is not None:
        policy = set_params(policy, params)
    if match_conditions is not None:
        policy = set_match_conditions(policy, match_conditions)
    if exclude is not None:
        policy = set_exclude(policy, exclude)
    if failure_action is not None:
        policy = set_failure_action(policy, failure_action)
    return policy
