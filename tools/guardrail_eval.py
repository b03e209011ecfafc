"""Offline evaluator for the guardrail catalog's Kyverno ClusterPolicies and `kyverno test` files.

It follows tests/kyverno_cel.py (the SR2 harness) and uses the same CEL engine,
cel-expr-python with the optional and strings extensions, plus the Kubernetes CEL library
functions the catalog needs (quantity(), list sum(): tools/k8s_cel_library.py). On top of
the SR2 subset it evaluates what the catalog uses:

- match/exclude filters: `kinds`, `names`, `namespaces`, `operations`, and label selectors
  (`selector`, `namespaceSelector`) with `matchLabels` and `matchExpressions`
  (In, NotIn, Exists, DoesNotExist), as Kyverno does;
- `validate.cel` (`variables`, `expressions` with `message` and `messageExpression`),
  `validate.failureAction`;
- `generate` with `data` (variable substitution of `{{request.object.metadata.name}}` and
  `{{request.object.metadata.namespace}}`), compared to a test's `generatedResource`;
- `PolicyException` (kyverno.io/v2) scoped by policy, rule names, kinds, namespaces and
  names: a matching exception turns the result into `skip`, as in `kyverno test`.

Anything else raises UnsupportedPolicyError naming the field. CEL is never interpreted
here: every expression is compiled and evaluated by cel-expr-python.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from cel_expr_python import cel
from cel_expr_python.ext import ext_optional, ext_strings

from tools import k8s_cel_library

AUTOGEN_ANNOTATION = "pod-policies.kyverno.io/autogen-controllers"


class UnsupportedPolicyError(ValueError):
    """Raised for any construct outside the supported subset."""


def _check_keys(obj: dict, allowed: set[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise UnsupportedPolicyError(
                f"unsupported field {where}.{key}: tools/guardrail_eval.py evaluates a subset "
                f"of Kyverno; run `kyverno test` for this policy")


def load_yaml_docs(path: Path) -> list[dict]:
    with open(path) as fh:
        return [d for d in yaml.load_all(fh, Loader=yaml.CSafeLoader) if d]


# --------------------------------------------------------------- checking

_FILTER_KEYS = {"kinds", "names", "namespaces", "namespaceSelector", "selector", "operations"}
_SELECTOR_KEYS = {"matchLabels", "matchExpressions"}


def _check_block(block: dict, where: str) -> None:
    _check_keys(block, {"any", "all"}, where)
    for mode in ("any", "all"):
        for j, flt in enumerate(block.get(mode, [])):
            fwhere = f"{where}.{mode}[{j}]"
            _check_keys(flt, {"resources"}, fwhere)
            _check_keys(flt["resources"], _FILTER_KEYS, f"{fwhere}.resources")
            for sel in ("selector", "namespaceSelector"):
                if sel in flt["resources"]:
                    _check_keys(flt["resources"][sel], _SELECTOR_KEYS, f"{fwhere}.resources.{sel}")


def check_policy_supported(policy: dict) -> None:
    if policy.get("apiVersion") != "kyverno.io/v1" or policy.get("kind") != "ClusterPolicy":
        raise UnsupportedPolicyError("only kyverno.io/v1 ClusterPolicy is supported")
    annotations = policy.get("metadata", {}).get("annotations", {}) or {}
    if annotations.get(AUTOGEN_ANNOTATION) != "none":
        raise UnsupportedPolicyError(
            f"metadata.annotations[{AUTOGEN_ANNOTATION}] must be 'none': the catalog lists "
            "every workload kind explicitly instead of relying on autogen")
    spec = policy["spec"]
    _check_keys(spec, {"validationFailureAction", "background", "rules", "webhookConfiguration",
                       "admission", "generateExisting", "useServerSideApply"}, "spec")
    for i, rule in enumerate(spec["rules"]):
        where = f"spec.rules[{i}]"
        _check_keys(rule, {"name", "match", "exclude", "validate", "generate", "skipBackgroundRequests"},
                    where)
        for block in ("match", "exclude"):
            if block in rule:
                _check_block(rule[block], f"{where}.{block}")
        if ("validate" in rule) == ("generate" in rule):
            raise UnsupportedPolicyError(f"{where}: exactly one of validate or generate")
        if "validate" in rule:
            validate = rule["validate"]
            _check_keys(validate, {"message", "cel", "failureAction"}, f"{where}.validate")
            if "cel" not in validate:
                raise UnsupportedPolicyError(f"{where}.validate: only validate.cel is supported")
            _check_keys(validate["cel"], {"variables", "expressions"}, f"{where}.validate.cel")
            for j, exp in enumerate(validate["cel"]["expressions"]):
                _check_keys(exp, {"expression", "message", "messageExpression"},
                            f"{where}.validate.cel.expressions[{j}]")
        else:
            _check_keys(rule["generate"], {"apiVersion", "kind", "name", "namespace", "synchronize",
                                           "data", "generateExisting", "orphanDownstreamOnPolicyDelete"},
                        f"{where}.generate")


# --------------------------------------------------------------- matching

def _kind_matches(pattern: str, resource: dict, subresource: str = "") -> bool:
    pattern, _, sub = pattern.partition("/") if pattern.count("/") == 1 else (pattern, "", "")
    if sub:  # Kind/subresource, e.g. Pod/ephemeralcontainers
        return sub == subresource and pattern == resource.get("kind")
    if subresource:
        return False
    api_version = resource.get("apiVersion", "")
    group, _, version = api_version.rpartition("/")
    parts = pattern.split("/")
    if len(parts) == 1:
        return parts[0] == resource.get("kind")
    if len(parts) == 3:
        pgroup, pversion, pkind = parts
        return pkind == resource.get("kind") and pgroup == group and pversion in ("*", version)
    raise UnsupportedPolicyError(f"unsupported kinds entry {pattern!r}")


def selector_matches(selector: dict, labels: dict) -> bool:
    """metav1.LabelSelector semantics (matchLabels AND every matchExpression)."""
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for exp in selector.get("matchExpressions") or []:
        key, op, values = exp["key"], exp["operator"], exp.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise UnsupportedPolicyError(f"selector operator {op!r}")
    return True


@dataclass
class Request:
    operation: str = "CREATE"
    username: str = ""
    groups: list[str] = field(default_factory=list)
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    subresource: str = ""


def _filter_matches(flt: dict, resource: dict, req: Request) -> bool:
    desc = flt["resources"]
    meta = resource.get("metadata", {})
    namespace = meta.get("namespace", "")
    if resource.get("kind") == "Namespace":
        namespace = meta.get("name", "")
    if "kinds" in desc and not any(_kind_matches(k, resource, req.subresource) for k in desc["kinds"]):
        return False
    if "names" in desc and not any(fnmatch.fnmatchcase(meta.get("name", ""), n) for n in desc["names"]):
        return False
    if "namespaces" in desc and not any(fnmatch.fnmatchcase(namespace, n) for n in desc["namespaces"]):
        return False
    if "namespaceSelector" in desc:
        labels = dict(req.namespace_labels.get(namespace, {}))
        labels.setdefault("kubernetes.io/metadata.name", namespace)
        if not selector_matches(desc["namespaceSelector"], labels):
            return False
    if "selector" in desc and not selector_matches(desc["selector"], meta.get("labels", {})):
        return False
    if "operations" in desc and req.operation not in desc["operations"]:
        return False
    return True


def _block_matches(block: dict, resource: dict, req: Request) -> bool:
    if "any" in block and not any(_filter_matches(f, resource, req) for f in block["any"]):
        return False
    if "all" in block and not all(_filter_matches(f, resource, req) for f in block["all"]):
        return False
    return "any" in block or "all" in block


def rule_applies(rule: dict, resource: dict, req: Request) -> bool:
    if not _block_matches(rule["match"], resource, req):
        return False
    return not ("exclude" in rule and _block_matches(rule["exclude"], resource, req))


def exception_applies(exc: dict, policy: str, rule: str, resource: dict, req: Request) -> bool:
    spec = exc["spec"]
    _check_keys(spec, {"exceptions", "match", "background"}, "PolicyException.spec")
    named = any(e["policyName"] == policy and
                any(fnmatch.fnmatchcase(rule, r) for r in e.get("ruleNames", []))
                for e in spec["exceptions"])
    return named and _block_matches(spec["match"], resource, req)


# --------------------------------------------------------------------- CEL

_ENV = cel.NewEnv(
    variables={n: cel.Type.DYN for n in ("object", "oldObject", "request", "namespaceObject", "variables")},
    extensions=[ext_optional.ExtOptional(), ext_strings.ExtStrings()],
    functions=k8s_cel_library.function_decls(),
)
_COMPILED: dict[str, Any] = {}


def compile_expr(expression: str) -> Any:
    if expression not in _COMPILED:
        _COMPILED[expression] = _ENV.compile(expression)
    return _COMPILED[expression]


@dataclass
class Outcome:
    result: str  # pass | fail | skip | error
    message: str = ""
    generated: Optional[dict] = None


def _activation(resource: dict, req: Request) -> dict[str, Any]:
    meta = resource.get("metadata", {})
    namespace = meta.get("namespace", "")
    group, _, version = resource.get("apiVersion", "").rpartition("/")
    return {
        "object": copy.deepcopy(resource),
        "oldObject": copy.deepcopy(resource) if req.operation == "UPDATE" else None,
        "request": {
            "operation": req.operation, "namespace": namespace, "name": meta.get("name", ""),
            "kind": {"group": group, "version": version, "kind": resource.get("kind", "")},
            "userInfo": {"username": req.username, "groups": list(req.groups)},
        },
        "namespaceObject": {"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": namespace,
                                         "labels": dict(req.namespace_labels.get(namespace, {}))}},
    }


def _validate(rule: dict, resource: dict, req: Request) -> Outcome:
    data = _activation(resource, req)
    block = rule["validate"]["cel"]
    variables: dict[str, Any] = {}
    for var in block.get("variables", []):
        data["variables"] = variables
        value = compile_expr(var["expression"]).eval(data=data)
        if value.type() == cel.Type.ERROR:
            return Outcome("error", f"variable {var['name']}: {value.value()}")
        variables[var["name"]] = value.plain_value()
    data["variables"] = variables
    for exp in block["expressions"]:
        value = compile_expr(exp["expression"]).eval(data=data)
        if value.type() == cel.Type.ERROR:
            return Outcome("error", f"expression {exp['expression']!r}: {value.value()}")
        if value.type() != cel.Type.BOOL:
            return Outcome("error", f"expression {exp['expression']!r} returned {value.type().name()}")
        if not value.plain_value():
            message = exp.get("message") or rule["validate"].get("message", "")
            if "messageExpression" in exp:
                # As in Kubernetes/Kyverno: a messageExpression that errors falls back to message.
                text = compile_expr(exp["messageExpression"]).eval(data=data)
                if text.type() == cel.Type.STRING and text.plain_value().strip():
                    message = text.plain_value()
            return Outcome("fail", " ".join(message.split()))
    return Outcome("pass", f"Validation rule '{rule['name']}' passed.")


_VAR = re.compile(r"\{\{\s*request\.object\.metadata\.(name|namespace)\s*\}\}")


def _substitute(value: Any, resource: dict) -> Any:
    if isinstance(value, str):
        return _VAR.sub(lambda m: resource.get("metadata", {}).get(m.group(1), ""), value)
    if isinstance(value, dict):
        return {k: _substitute(v, resource) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, resource) for v in value]
    return value


def _generate(rule: dict, resource: dict) -> Outcome:
    gen = rule["generate"]
    if "{{" in yaml.safe_dump(_substitute(gen, resource)):
        raise UnsupportedPolicyError("generate uses variables other than request.object.metadata.name/namespace")
    gen = _substitute(gen, resource)
    obj = {"apiVersion": gen["apiVersion"], "kind": gen["kind"],
           "metadata": {**copy.deepcopy(gen["data"].get("metadata", {})),
                        "name": gen["name"], "namespace": gen["namespace"]},
           **{k: copy.deepcopy(v) for k, v in gen["data"].items() if k != "metadata"}}
    return Outcome("pass", f"generated {gen['kind']}/{gen['namespace']}/{gen['name']}", obj)


def evaluate_rule(policy: dict, rule: dict, resource: dict, req: Request,
                  exceptions: Sequence[dict] = ()) -> Outcome:
    if not rule_applies(rule, resource, req):
        return Outcome("skip", "rule does not match (match/exclude)")
    name = policy["metadata"]["name"]
    for exc in exceptions:
        if exception_applies(exc, name, rule["name"], resource, req):
            return Outcome("skip", f"PolicyException {exc['metadata'].get('namespace', '')}/"
                                   f"{exc['metadata']['name']} applies")
    if "generate" in rule:
        return _generate(rule, resource)
    return _validate(rule, resource, req)


# ------------------------------------------------------------ test suites

@dataclass
class Case:
    test_file: Path
    policy: str
    rule: str
    resource: str
    kind: str
    expected: str
    generated_resource: Optional[Path] = None


@dataclass
class TestSuite:
    path: Path
    policies: list[dict]
    resources: list[dict]
    exceptions: list[dict]
    namespace_labels: dict[str, dict[str, str]]
    operations: dict[tuple[str, str], str]
    username: str
    groups: list[str]
    cases: list[Case] = field(default_factory=list)


def load_suite(test_file: Path) -> TestSuite:
    test_file = Path(test_file)
    base = test_file.parent
    (test,) = load_yaml_docs(test_file)
    _check_keys(test, {"apiVersion", "kind", "metadata", "policies", "resources", "exceptions",
                       "variables", "userinfo", "results"}, "Test")
    if test.get("apiVersion") != "cli.kyverno.io/v1alpha1" or test.get("kind") != "Test":
        raise UnsupportedPolicyError(f"{test_file}: not a cli.kyverno.io/v1alpha1 Test")
    policies = [d for p in test["policies"] for d in load_yaml_docs(base / p)]
    for pol in policies:
        check_policy_supported(pol)
    resources = [d for r in test["resources"] for d in load_yaml_docs(base / r)]
    exceptions = [d for e in test.get("exceptions", []) for d in load_yaml_docs(base / e)]
    namespace_labels: dict[str, dict[str, str]] = {}
    operations: dict[tuple[str, str], str] = {}
    if "variables" in test:
        (values,) = load_yaml_docs(base / test["variables"])
        _check_keys(values, {"apiVersion", "kind", "metadata", "namespaceSelector", "policies"}, "Values")
        for sel in values.get("namespaceSelector", []):
            namespace_labels[sel["name"]] = dict(sel.get("labels", {}))
        for pol in values.get("policies", []):
            for res in pol.get("resources", []):
                _check_keys(res.get("values", {}), {"request.operation"}, "Values.policies[].resources[].values")
                op = res.get("values", {}).get("request.operation")
                if op:
                    operations[(pol["name"], res["name"])] = op
    username, groups = "", []
    if "userinfo" in test:
        (info,) = load_yaml_docs(base / test["userinfo"])
        username = info.get("userInfo", {}).get("username", "")
        groups = list(info.get("userInfo", {}).get("groups", []))
    suite = TestSuite(test_file, policies, resources, exceptions, namespace_labels, operations, username, groups)
    for res in test["results"]:
        _check_keys(res, {"policy", "rule", "resources", "kind", "result", "generatedResource"}, "Test.results[]")
        gen = base / res["generatedResource"] if "generatedResource" in res else None
        for name in res["resources"]:
            suite.cases.append(Case(test_file, res["policy"], res["rule"], name, res["kind"], res["result"], gen))
    return suite


def discover_test_files(root: Path) -> list[Path]:
    return sorted(Path(root).rglob("kyverno-test.yaml"))


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
    req = Request(suite.operations.get((case.policy, case.resource), "CREATE"), suite.username,
                  suite.groups, suite.namespace_labels)
    return evaluate_rule(policy, rule, matches[0], req, suite.exceptions)
