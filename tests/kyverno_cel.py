"""Minimal evaluator for Kyverno `validate.cel` ClusterPolicies and `kyverno test` files.

Supported subset (anything else raises UnsupportedPolicyError naming the field):
- ClusterPolicy (kyverno.io/v1) with autogen disabled
  (annotation pod-policies.kyverno.io/autogen-controllers: none)
- `spec.webhookConfiguration` with `failurePolicy`, `timeoutSeconds` and `matchConditions`
  (evaluated by :func:`webhook_matches` in the API server's environment: `object`, `oldObject`,
  `request`; `authorizer` is not supported and fails loudly)
- rules with `match` / `exclude` using `any` or `all` of `resources` filters with
  `kinds` (Kind, Kind/subresource or group/version/Kind), `namespaces` (exact or glob),
  `namespaceSelector.matchLabels` and `operations`
- `validate.message` and `validate.cel` with `variables` and `expressions`
  (`expression`, `message`)
- kyverno-test.yaml with `policies`, `resources`, `variables` (values file with
  `namespaceSelector` and per-resource `request.operation`), `userinfo`, `results`

Project extension (not read by the Kyverno CLI, which uses the object as its own old object):
`update-cases.yaml` files next to kyverno-test.yaml list UPDATE requests whose old object
differs (see :func:`load_update_cases`).

A CEL expression that does not compile (unknown function or variable) raises
UnsupportedPolicyError naming it. CEL is never interpreted here: every variable and expression is compiled and
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
from typing import Any, Optional

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
    webhook = spec.get("webhookConfiguration", {}) or {}
    _check_keys(webhook, {"failurePolicy", "timeoutSeconds", "matchConditions"}, "spec.webhookConfiguration")
    for j, cond in enumerate(webhook.get("matchConditions", []) or []):
        _check_keys(cond, {"name", "expression"}, f"spec.webhookConfiguration.matchConditions[{j}]")
        if "authorizer" in cond["expression"]:
            raise _unsupported(f"spec.webhookConfiguration.matchConditions[{j}]", "<authorizer>")
        compile_expr(cond["expression"], f"spec.webhookConfiguration.matchConditions[{j}]")
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
        for j, var in enumerate(validate["cel"].get("variables", [])):
            _check_keys(var, {"name", "expression"}, f"{where}.validate.cel.variables[{j}]")
            compile_expr(var["expression"], f"{where}.validate.cel.variables[{j}] ({var['name']})")
        for j, exp in enumerate(validate["cel"]["expressions"]):
            _check_keys(exp, {"expression", "message"},
                        f"{where}.validate.cel.expressions[{j}]")
            compile_expr(exp["expression"], f"{where}.validate.cel.expressions[{j}]")


# --------------------------------------------------------------- matching

def _kind_matches(pattern: str, resource: dict, subresource: str = "") -> bool:
    api_version = resource.get("apiVersion", "")
    group, _, version = api_version.rpartition("/")
    parts = pattern.split("/")
    if len(parts) == 1:
        return parts[0] == resource.get("kind") and not subresource
    if len(parts) == 2:
        if parts[0][:1].isupper():  # Kind/subresource
            return parts[0] == resource.get("kind") and parts[1] == subresource
        raise UnsupportedPolicyError(f"unsupported kinds entry {pattern!r} (use Kind, Kind/subresource or group/version/Kind)")
    if subresource:
        return False
    if len(parts) == 3:
        pgroup, pversion, pkind = parts
        return (pkind == resource.get("kind") and pgroup == group
                and pversion in ("*", version))
    raise UnsupportedPolicyError(f"unsupported kinds entry {pattern!r} (use Kind or group/version/Kind)")


def _filter_matches(flt: dict, resource: dict, operation: str, ns_labels: dict,
                    subresource: str = "") -> bool:
    desc = flt["resources"]
    namespace = resource.get("metadata", {}).get("namespace", "")
    if "kinds" in desc and not any(_kind_matches(k, resource, subresource) for k in desc["kinds"]):
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


def _block_matches(block: dict, resource: dict, operation: str, ns_labels: dict,
                   subresource: str = "") -> bool:
    if "any" in block and not any(_filter_matches(f, resource, operation, ns_labels, subresource)
                                  for f in block["any"]):
        return False
    if "all" in block and not all(_filter_matches(f, resource, operation, ns_labels, subresource)
                                  for f in block["all"]):
        return False
    return "any" in block or "all" in block


def rule_applies(rule: dict, resource: dict, operation: str, ns_labels: dict,
                 subresource: str = "") -> bool:
    if not _block_matches(rule["match"], resource, operation, ns_labels, subresource):
        return False
    if "exclude" in rule and _block_matches(rule["exclude"], resource, operation, ns_labels, subresource):
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


_COMPILED: dict[str, Any] = {}


def compile_expr(expression: str, where: str = "expression") -> Any:
    """Compile with cel-expr-python; an unknown function/variable raises UnsupportedPolicyError."""
    if expression not in _COMPILED:
        try:
            _COMPILED[expression] = _ENV.compile(expression)
        except RuntimeError as err:
            raise UnsupportedPolicyError(
                f"{where}: CEL does not compile here ({err}); an unknown function or a "
                f"Kubernetes CEL library this evaluator lacks: run `kyverno test`") from err
    return _COMPILED[expression]


def _request(resource: dict, operation: str, username: str, groups: list[str],
             subresource: str = "") -> dict:
    meta = resource.get("metadata", {})
    group, _, version = resource.get("apiVersion", "").rpartition("/")
    return {
        "operation": operation,
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "subResource": subresource,
        "kind": {"group": group, "version": version, "kind": resource.get("kind", "")},
        "userInfo": {"username": username, "groups": list(groups)},
    }


def webhook_matches(policy: dict, resource: dict, operation: str, old: Optional[dict] = None,
                    username: str = "", groups: Optional[list[str]] = None,
                    subresource: str = "") -> bool:
    """The policy's webhook `matchConditions` as the API server evaluates them (all must be true).

    An evaluation error raises: with failurePolicy Fail the API server would reject the request.
    """
    data = {"object": copy.deepcopy(resource),
            "oldObject": copy.deepcopy(old) if old is not None else None,
            "request": _request(resource, operation, username, groups or [], subresource)}
    for cond in (policy["spec"].get("webhookConfiguration", {}) or {}).get("matchConditions", []) or []:
        value = compile_expr(cond["expression"], cond["name"]).eval(data=data)
        if value.type() != cel.Type.BOOL:
            raise UnsupportedPolicyError(f"matchCondition {cond['name']}: {value.value()}")
        if not value.plain_value():
            return False
    return True


_NO_OLD = object()


def evaluate_rule(rule: dict, resource: dict, operation: str, username: str,
                  groups: list[str], ns_labels: dict, old: Any = _NO_OLD,
                  subresource: str = "") -> Outcome:
    if not rule_applies(rule, resource, operation, ns_labels, subresource):
        return Outcome("skip", "rule does not match (match/exclude)")
    namespace = resource.get("metadata", {}).get("namespace", "")
    obj = copy.deepcopy(resource)
    if old is _NO_OLD:
        # Mirrors the Kyverno CLI: UPDATE without a separate old object uses the resource itself.
        old = copy.deepcopy(resource) if operation == "UPDATE" else None
    else:
        old = copy.deepcopy(old)
    data: dict[str, Any] = {
        "object": obj,
        "oldObject": old,
        "request": _request(resource, operation, username, groups, subresource),
        "namespaceObject": {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": dict(ns_labels.get(namespace, {}))},
        },
    }
    cel_block = rule["validate"]["cel"]
    variables: dict[str, Any] = {}
    for var in cel_block.get("variables", []):
        data["variables"] = variables
        value = compile_expr(var["expression"], var["name"]).eval(data=data)
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


# ------------------------------------------------ UPDATE cases (project extension)

@dataclass
class UpdateCase:
    file: Path
    name: str
    username: str
    operation: str
    subresource: str
    object: dict
    old_object: Optional[dict]
    policy: str
    rule: str
    expected: str


def load_update_cases(path: Path) -> list[UpdateCase]:
    """`update-cases.yaml`: requests whose old object differs from the object.

    Format: {policy, rule, namespaceLabels?, cases: [{name, username, operation (UPDATE),
    subresource?, object, oldObject, result}]}. Unknown keys raise.
    """
    (doc,) = load_yaml_docs(path)
    _check_keys(doc, {"policy", "rule", "cases"}, f"{path.name}")
    out = []
    for i, c in enumerate(doc["cases"]):
        _check_keys(c, {"name", "username", "operation", "subresource", "object", "oldObject", "result"},
                    f"{path.name}.cases[{i}]")
        out.append(UpdateCase(path, c["name"], c.get("username", ""), c.get("operation", "UPDATE"),
                              c.get("subresource", ""), c["object"], c.get("oldObject"),
                              doc["policy"], doc["rule"], c["result"]))
    return out


def discover_update_files(root: Path) -> list[Path]:
    return sorted(Path(root).rglob("update-cases.yaml"))


# ------------------------------------------- ValidatingPolicy (policies.kyverno.io/v1)

_VP_SPEC_KEYS = {"validationActions", "failurePolicy", "webhookConfiguration", "evaluation", "autogen",
                 "matchConstraints", "matchConditions", "variables", "validations"}


def check_validating_policy_supported(policy: dict) -> None:
    """Supported: matchConstraints.resourceRules (apiGroups, apiVersions, operations, resources) and a
    namespaceSelector with matchLabels / matchExpressions In|NotIn; matchConditions; variables;
    validations (expression, message). Anything else raises."""
    if policy.get("apiVersion") != "policies.kyverno.io/v1" or policy.get("kind") != "ValidatingPolicy":
        raise UnsupportedPolicyError("only policies.kyverno.io/v1 ValidatingPolicy is supported here")
    spec = policy["spec"]
    _check_keys(spec, _VP_SPEC_KEYS, "spec")
    if spec.get("autogen", {}).get("podControllers", {}).get("controllers", []) != []:
        raise _unsupported("spec.autogen.podControllers", "controllers (autogen rules are not evaluated)")
    mc = spec["matchConstraints"]
    _check_keys(mc, {"resourceRules", "namespaceSelector"}, "spec.matchConstraints")
    for i, r in enumerate(mc["resourceRules"]):
        _check_keys(r, {"apiGroups", "apiVersions", "operations", "resources"}, f"spec.matchConstraints.resourceRules[{i}]")
    sel = mc.get("namespaceSelector", {})
    _check_keys(sel, {"matchLabels", "matchExpressions"}, "spec.matchConstraints.namespaceSelector")
    for e in sel.get("matchExpressions", []):
        if e.get("operator") not in ("In", "NotIn"):
            raise _unsupported("spec.matchConstraints.namespaceSelector.matchExpressions", e.get("operator"))
    for j, cond in enumerate(spec.get("matchConditions", [])):
        _check_keys(cond, {"name", "expression"}, f"spec.matchConditions[{j}]")
        compile_expr(cond["expression"], f"spec.matchConditions[{j}]")
    for j, var in enumerate(spec.get("variables", [])):
        _check_keys(var, {"name", "expression"}, f"spec.variables[{j}]")
        compile_expr(var["expression"], f"spec.variables[{j}]")
    for j, val in enumerate(spec["validations"]):
        _check_keys(val, {"expression", "message"}, f"spec.validations[{j}]")
        compile_expr(val["expression"], f"spec.validations[{j}]")


def _plural(kind: str) -> str:
    return kind.lower() + "s"  # true for every kind the project's policies match


def evaluate_validating_policy(policy: dict, resource: dict, operation: str, username: str,
                               ns_labels: dict, old: Any = _NO_OLD, subresource: str = "") -> Outcome:
    check_validating_policy_supported(policy)
    spec = policy["spec"]
    group, _, _ = resource.get("apiVersion", "").rpartition("/")
    resource_name = _plural(resource["kind"]) + (f"/{subresource}" if subresource else "")
    rules = spec["matchConstraints"]["resourceRules"]
    if not any(group in r["apiGroups"] and resource_name in r["resources"] and operation in r["operations"]
               for r in rules):
        return Outcome("skip", "matchConstraints.resourceRules")
    namespace = resource.get("metadata", {}).get("namespace", "")
    labels = {**ns_labels.get(namespace, {}), "kubernetes.io/metadata.name": namespace}
    sel = spec["matchConstraints"].get("namespaceSelector", {})
    if not all(labels.get(k) == v for k, v in sel.get("matchLabels", {}).items()):
        return Outcome("skip", "namespaceSelector")
    for e in sel.get("matchExpressions", []):
        inside = labels.get(e["key"]) in e["values"]
        if inside != (e["operator"] == "In"):
            return Outcome("skip", "namespaceSelector")
    if old is _NO_OLD:
        old = copy.deepcopy(resource) if operation == "UPDATE" else None
    if not webhook_matches({"spec": {"webhookConfiguration": {"matchConditions": spec.get("matchConditions", [])}}},
                           resource, operation, old, username, [], subresource):
        return Outcome("skip", "matchConditions")
    rule = {"name": policy["metadata"]["name"], "match": {"any": [{"resources": {}}]},
            "validate": {"cel": {"variables": spec.get("variables", []), "expressions": spec["validations"]}}}
    return evaluate_rule(rule, resource, operation, username, [], ns_labels, old=old, subresource=subresource)
