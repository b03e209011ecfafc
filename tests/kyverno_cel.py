"""Minimal evaluator for Kyverno `validate.cel` ClusterPolicies and `kyverno test` files.

Supported subset (anything else raises UnsupportedPolicyError naming the field):
- ClusterPolicy (kyverno.io/v1) with autogen disabled
  (annotation pod-policies.kyverno.io/autogen-controllers: none)
- rules with `match` / `exclude` using `any` or `all` of `resources` filters with
  `kinds` (Kind or group/version/Kind), `namespaces` (exact or glob),
  `namespaceSelector.matchLabels` and `operations`
- `validate.message` and `validate.cel` with `variables` and `expressions`
  (`expression`, `message`)
- kyverno-test.yaml with `policies`, `resources`, `variables` (values file with
  `namespaceSelector` and per-resource `request.operation`), `userinfo`, `results`

CEL is never interpreted here: every variable and expression is compiled and
evaluated by cel-expr-python with the optional-syntax extension (`.?f`, `[?k]`,
`orValue`) and the strings extension, as in Kubernetes CEL. Activation:
`object`, `oldObject` (null on CREATE; on UPDATE the CLI uses a copy of the
resource), `request` (operation, userInfo.username/groups, namespace, name, kind),
`namespaceObject` (Namespace with the labels from the values file) and `variables`.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cel_expr_python import cel
from cel_expr_python.ext import ext_optional, ext_strings

AUTOGEN_ANNOTATION = "pod-policies.kyverno.io/autogen-controllers"


class UnsupportedPolicyError(ValueError):
    """Raised for any construct outside the supported subset."""


def _unsupported(where: str, key: str) -> UnsupportedPolicyError:
    return UnsupportedPolicyError(
        f"unsupported field {where}.{key}: tests/kyverno_cel.py only evaluates a "
        f"subset of Kyverno; run `kyverno test` for this policy"
    )


def _check_keys(obj: dict, allowed: set[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _unsupported(where, key)


# ---------------------------------------------------------------- loading

def load_yaml_docs(path: Path) -> list[dict]:
    with open(path) as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


@dataclass
class Case:
    test_file: Path
    policy: str
    rule: str
    resource: str
    kind: str
    expected: str


@dataclass
class Outcome:
    result: str  # pass | fail | skip | error
    message: str = ""


@dataclass
class TestSuite:
    path: Path
    policies: list[dict]
    resources: list[dict]
    namespace_labels: dict[str, dict[str, str]]
    operations: dict[tuple[str, str], str]
    username: str
    groups: list[str]
    cases: list[Case] = field(default_factory=list)


def load_suite(test_file: Path) -> TestSuite:
    test_file = Path(test_file)
    base = test_file.parent
    docs = load_yaml_docs(test_file)
    if len(docs) != 1:
        raise UnsupportedPolicyError(f"{test_file}: expected exactly one Test document")
    test = docs[0]
    _check_keys(test, {"apiVersion", "kind", "metadata", "policies", "resources",
                       "variables", "userinfo", "results"}, "Test")
    if test.get("apiVersion") != "cli.kyverno.io/v1alpha1" or test.get("kind") != "Test":
        raise UnsupportedPolicyError(f"{test_file}: not a cli.kyverno.io/v1alpha1 Test")

    policies = [d for p in test["policies"] for d in load_yaml_docs(base / p)]
    for pol in policies:
        check_policy_supported(pol)
    resources = [d for r in test["resources"] for d in load_yaml_docs(base / r)]

    namespace_labels: dict[str, dict[str, str]] = {}
    operations: dict[tuple[str, str], str] = {}
    if "variables" in test:
        (values,) = load_yaml_docs(base / test["variables"])
        _check_keys(values, {"apiVersion", "kind", "metadata", "namespaceSelector",
                             "policies"}, "Values")
        for sel in values.get("namespaceSelector", []):
            namespace_labels[sel["name"]] = dict(sel.get("labels", {}))
        for pol in values.get("policies", []):
            _check_keys(pol, {"name", "resources"}, "Values.policies[]")
            for res in pol.get("resources", []):
                _check_keys(res, {"name", "values"}, "Values.policies[].resources[]")
                _check_keys(res.get("values", {}), {"request.operation"},
                            "Values.policies[].resources[].values")
                op = res.get("values", {}).get("request.operation")
                if op:
                    operations[(pol["name"], res["name"])] = op

    username, groups = "", []
    if "userinfo" in test:
        (info,) = load_yaml_docs(base / test["userinfo"])
        _check_keys(info, {"apiVersion", "kind", "metadata", "userInfo", "clusterRoles",
                           "roles"}, "UserInfo")
        username = info.get("userInfo", {}).get("username", "")
        groups = list(info.get("userInfo", {}).get("groups", []))

    suite = TestSuite(test_file, policies, resources, namespace_labels, operations,
                      username, groups)
    for res in test["results"]:
        _check_keys(res, {"policy", "rule", "resources", "kind", "result"}, "Test.results[]")
        for name in res["resources"]:
            suite.cases.append(Case(test_file, res["policy"], res["rule"], name,
                                    res["kind"], res["result"]))
    return suite


def discover_test_files(root: Path) -> list[Path]:
    """Like `kyverno test <dir>`: every kyverno-test.yaml below root, recursively."""
    return sorted(Path(root).rglob("kyverno-test.yaml"))


# -------------------------------------------------------- policy checking

_FILTER_KEYS = {"kinds", "namespaces", "namespaceSelector", "operations"}


def check_policy_supported(policy: dict) -> None:
    if policy.get("apiVersion") != "kyverno.io/v1" or policy.get("kind") != "ClusterPolicy":
        raise UnsupportedPolicyError("only kyverno.io/v1 ClusterPolicy is supported")
    annotations = policy.get("metadata", {}).get("annotations", {}) or {}
    if annotations.get(AUTOGEN_ANNOTATION) != "none":
        raise UnsupportedPolicyError(
            f"unsupported: metadata.annotations[{AUTOGEN_ANNOTATION}] must be 'none' "
            f"(got {annotations.get(AUTOGEN_ANNOTATION)!r}); autogen rules are not evaluated"
        )
    spec = policy["spec"]
    _check_keys(spec, {"validationFailureAction", "background", "rules",
                       "webhookConfiguration", "admission"}, "spec")
    for i, rule in enumerate(spec["rules"]):
        where = f"spec.rules[{i}]"
        _check_keys(rule, {"name", "match", "exclude", "validate"}, where)
        for block in ("match", "exclude"):
            if block not in rule:
                continue
            _check_keys(rule[block], {"any", "all"}, f"{where}.{block}")
            for mode in ("any", "all"):
                for j, flt in enumerate(rule[block].get(mode, [])):
                    fwhere = f"{where}.{block}.{mode}[{j}]"
                    _check_keys(flt, {"resources"}, fwhere)
                    _check_keys(flt["resources"], _FILTER_KEYS, f"{fwhere}.resources")
                    sel = flt["resources"].get("namespaceSelector")
                    if sel is not None:
                        _check_keys(sel, {"matchLabels"}, f"{fwhere}.resources.namespaceSelector")
        validate = rule.get("validate")
        if validate is None:
            raise _unsupported(where, "<rule without validate>")
        _check_keys(validate, {"message", "cel"}, f"{where}.validate")
        if "cel" not in validate:
            raise _unsupported(f"{where}.validate", "<validate without cel>")
        _check_keys(validate["cel"], {"variables", "expressions"}, f"{where}.validate.cel")
        for j, exp in enumerate(validate["cel"]["expressions"]):
            _check_keys(exp, {"expression", "message"},
                        f"{where}.validate.cel.expressions[{j}]")


# --------------------------------------------------------------- matching

def _kind_matches(pattern: str, resource: dict) -> bool:
    api_version = resource.get("apiVersion", "")
    group, _, version = api_version.rpartition("/")
    parts = pattern.split("/")
    if len(parts) == 1:
        return parts[0] == resource.get("kind")
    if len(parts) == 3:
        pgroup, pversion, pkind = parts
        return (pkind == resource.get("kind") and pgroup == group
                and pversion in ("*", version))
    raise UnsupportedPolicyError(f"unsupported kinds entry {pattern!r} (use Kind or group/version/Kind)")


def _filter_matches(flt: dict, resource: dict, operation: str, ns_labels: dict) -> bool:
    desc = flt["resources"]
    namespace = resource.get("metadata", {}).get("namespace", "")
    if "kinds" in desc and not any(_kind_matches(k, resource) for k in desc["kinds"]):
        return False
    if "namespaces" in desc and not any(fnmatch.fnmatchcase(namespace, n) for n in desc["namespaces"]):
        return False
    if "namespaceSelector" in desc:
        wanted = desc["namespaceSelector"].get("matchLabels", {}) or {}
        labels = ns_labels.get(namespace, {})
        if not all(labels.get(k) == v for k, v in wanted.items()):
            return False
    if "operations" in desc and operation not in desc["operations"]:
        return False
    return True


def _block_matches(block: dict, resource: dict, operation: str, ns_labels: dict) -> bool:
    if "any" in block and not any(_filter_matches(f, resource, operation, ns_labels) for f in block["any"]):
        return False
    if "all" in block and not all(_filter_matches(f, resource, operation, ns_labels) for f in block["all"]):
        return False
    return "any" in block or "all" in block


def rule_applies(rule: dict, resource: dict, operation: str, ns_labels: dict) -> bool:
    if not _block_matches(rule["match"], resource, operation, ns_labels):
        return False
    if "exclude" in rule and _block_matches(rule["exclude"], resource, operation, ns_labels):
        return False
    return True


# --------------------------------------------------------------------- CEL

def _env() -> Any:
    return cel.NewEnv(
        variables={name: cel.Type.DYN for name in
                   ("object", "oldObject", "request", "namespaceObject", "variables")},
        extensions=[ext_optional.ExtOptional(), ext_strings.ExtStrings()],
    )


_ENV = _env()


def compile_expr(expression: str) -> Any:
    return _ENV.compile(expression)


def evaluate_rule(rule: dict, resource: dict, operation: str, username: str,
                  groups: list[str], ns_labels: dict) -> Outcome:
    if not rule_applies(rule, resource, operation, ns_labels):
        return Outcome("skip", "rule does not match (match/exclude)")
    meta = resource.get("metadata", {})
    namespace = meta.get("namespace", "")
    api_version = resource.get("apiVersion", "")
    group, _, version = api_version.rpartition("/")
    obj = copy.deepcopy(resource)
    # Mirrors the Kyverno CLI: UPDATE without a separate old object uses the resource itself.
    old = copy.deepcopy(resource) if operation == "UPDATE" else None
    data: dict[str, Any] = {
        "object": obj,
        "oldObject": old,
        "request": {
            "operation": operation,
            "namespace": namespace,
            "name": meta.get("name", ""),
            "kind": {"group": group, "version": version, "kind": resource.get("kind", "")},
            "userInfo": {"username": username, "groups": list(groups)},
        },
        "namespaceObject": {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": dict(ns_labels.get(namespace, {}))},
        },
    }
    cel_block = rule["validate"]["cel"]
    variables: dict[str, Any] = {}
    for var in cel_block.get("variables", []):
        data["variables"] = variables
        value = compile_expr(var["expression"]).eval(data=data)
        if value.type() == cel.Type.ERROR:
            return Outcome("error", f"variable {var['name']}: {value.value()}")
        variables[var["name"]] = value.plain_value()
    data["variables"] = variables
    for exp in cel_block["expressions"]:
        value = compile_expr(exp["expression"]).eval(data=data)
        if value.type() == cel.Type.ERROR:
            return Outcome("error", f"expression {exp['expression']!r}: {value.value()}")
        if value.type() != cel.Type.BOOL:
            return Outcome("error", f"expression {exp['expression']!r} returned {value.type().name()}")
        if not value.plain_value():
            return Outcome("fail", " ".join((exp.get("message") or rule["validate"].get("message", "")).split()))
    return Outcome("pass", f"Validation rule '{rule['name']}' passed.")


def evaluate_case(suite: TestSuite, case: Case) -> Outcome:
    policy = next((p for p in suite.policies if p["metadata"]["name"] == case.policy), None)
    if policy is None:
        raise LookupError(f"{case.test_file}: policy {case.policy} not found")
    rule = next((r for r in policy["spec"]["rules"] if r["name"] == case.rule), None)
    if rule is None:
        raise LookupError(f"{case.test_file}: rule {case.rule} not found in {case.policy}")
    matches = [r for r in suite.resources
               if r.get("metadata", {}).get("name") == case.resource and r.get("kind") == case.kind]
    if len(matches) != 1:
        raise LookupError(f"{case.test_file}: {len(matches)} resources named {case.kind}/{case.resource}")
    resource = matches[0]
    operation = suite.operations.get((case.policy, case.resource), "CREATE")
    return evaluate_rule(rule, resource, operation, suite.username, suite.groups,
                         suite.namespace_labels)
