"""Offline evaluator of Kyverno policy semantics and `kyverno test` suites, with real CEL.

One evaluator for every policy the project checks offline: the SR2 policies (through the SR2
profile, `tests/kyverno_cel.py`), the agent admission policy and the guardrail catalog (the
`tools/guardrail_report.py` render step and `tests/test_guardrails.py`). It is not Kyverno.
Supported (anything else raises UnsupportedPolicyError naming the field):

- ClusterPolicy (kyverno.io/v1) with autogen disabled
  (annotation pod-policies.kyverno.io/autogen-controllers: none);
- `spec.webhookConfiguration` with `failurePolicy`, `timeoutSeconds` and `matchConditions`
  (evaluated by :func:`webhook_matches` in the API server's environment: `object`, `oldObject`,
  `request`; `authorizer` is not supported and fails loudly);
- rules with `match` / `exclude` using `any` or `all` of `resources` filters with `kinds`
  (Kind, Kind/subresource or group/version/Kind), `names` and `namespaces` (exact or glob),
  `operations`, and label selectors (`selector`, `namespaceSelector`) with `matchLabels` and
  `matchExpressions` (In, NotIn, Exists, DoesNotExist), as Kyverno does;
- `validate.cel` (`variables`, `expressions` with `message` and `messageExpression`),
  `validate.message`, `validate.failureAction`;
- `generate` with `data` (variable substitution of `{{request.object.metadata.name}}` and
  `{{request.object.metadata.namespace}}`), compared to a test's `generatedResource`;
- `PolicyException` (kyverno.io/v2) scoped by policy, rule names and a match block: a matching
  exception turns the result into `skip`, as in `kyverno test`;
- ValidatingPolicy (policies.kyverno.io/v1): :func:`evaluate_validating_policy`;
- kyverno-test.yaml with `policies`, `resources`, `exceptions`, `variables` (values file with
  `namespaceSelector`, per-resource `request.operation` and `subresources`, the CLI's mapping of a
  subresource body such as Scale to its parent kind), `userinfo`, `results`
  (with `generatedResource`).

Project extension (not read by the Kyverno CLI, which uses the object as its own old object):
`update-cases.yaml` files next to kyverno-test.yaml list UPDATE requests whose old object
differs (see :func:`load_update_cases`).

CEL is never interpreted here: every variable, expression and matchCondition is compiled and
evaluated by cel-expr-python with the optional-syntax extension (`.?f`, `[?k]`, `orValue`) and
the strings extension, as in Kubernetes CEL, plus (per :class:`Profile`) the Kubernetes CEL
library functions of tools/k8s_cel_library.py (quantity(), list sum/min/max). A CEL expression
that does not compile (unknown function or variable) raises UnsupportedPolicyError naming it.
Activation: `object`, `oldObject` (null on CREATE; on UPDATE without a separate old object, a
copy of the resource, as the CLI does), `request` (operation, userInfo.username/groups,
namespace, name, kind; subResource only when set — it is omitempty — and never in a
ClusterPolicy rule, as in Kyverno), `namespaceObject` (Namespace with the labels from the
values file) and `variables`.

Every public function takes a keyword-only `profile`: :data:`FULL` (the default: everything
above) or a narrower one such as :data:`SR2`, which keeps the SR2 policies inside the subset
their own harness was written for (no Kubernetes CEL library, no selectors, no
messageExpression, no generate, no exceptions).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from cel_expr_python import cel
from cel_expr_python.ext import ext_optional, ext_strings

from components import yaml_io
from tools import k8s_cel_library

AUTOGEN_ANNOTATION = "pod-policies.kyverno.io/autogen-controllers"


class UnsupportedPolicyError(ValueError):
    """Raised for any construct outside the supported subset."""


@dataclass(frozen=True)
class Profile:
    """The part of the supported set a caller accepts; anything outside it raises.

    `k8s_library`: the Kubernetes CEL library (tools/k8s_cel_library.py) is declared; without it
    quantity(), sum(), ... fail to compile. `excluded`: field names (any level: spec, rule, filter,
    selector, validate, expression, Test keys) rejected as if unsupported.
    """

    name: str
    k8s_library: bool = True
    excluded: frozenset[str] = frozenset()


FULL = Profile("the full profile")
SR2 = Profile(
    "the SR2 profile", k8s_library=False,
    excluded=frozenset({"names", "selector", "matchExpressions", "messageExpression", "failureAction",
                        "generate", "skipBackgroundRequests", "generateExisting", "useServerSideApply",
                        "exceptions", "generatedResource"}))


def _unsupported(where: str, key: str, profile: Profile = FULL) -> UnsupportedPolicyError:
    return UnsupportedPolicyError(
        f"unsupported field {where}.{key}: {profile.name} only evaluates a "
        f"subset of Kyverno; run `kyverno test` for this policy"
    )


def _check_keys(obj: dict, allowed: set[str], where: str, profile: Profile = FULL) -> None:
    for key in obj:
        if key not in allowed or key in profile.excluded:
            raise _unsupported(where, key, profile)


# ---------------------------------------------------------------- loading

def load_yaml_docs(path: Path) -> list[dict]:
    with open(path) as fh:
        return [d for d in yaml_io.load_all(fh) if d]


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
class Outcome:
    result: str  # pass | fail | skip
    message: str = ""
    generated: Optional[dict] = None
    error: bool = False
    """The rule failed because CEL failed to evaluate. Kyverno's validate.cel handler builds the Kubernetes
    validator with no failure policy, which means Fail: an evaluation error denies (RuleFail)."""


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
    exceptions: list[dict] = field(default_factory=list)
    subresources: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)
    """Values `subresources`: (apiVersion, kind) of a subresource body -> (parent apiVersion, kind, subresource)."""


def load_suite(test_file: Path, *, profile: Profile = FULL) -> TestSuite:
    test_file = Path(test_file)
    base = test_file.parent
    docs = load_yaml_docs(test_file)
    if len(docs) != 1:
        raise UnsupportedPolicyError(f"{test_file}: expected exactly one Test document")
    test = docs[0]
    _check_keys(test, {"apiVersion", "kind", "metadata", "policies", "resources", "exceptions",
                       "variables", "userinfo", "results"}, "Test", profile)
    if test.get("apiVersion") != "cli.kyverno.io/v1alpha1" or test.get("kind") != "Test":
        raise UnsupportedPolicyError(f"{test_file}: not a cli.kyverno.io/v1alpha1 Test")

    policies = [d for p in test["policies"] for d in load_yaml_docs(base / p)]
    for pol in policies:
        check_policy_supported(pol, profile=profile)
    resources = [d for r in test["resources"] for d in load_yaml_docs(base / r)]
    exceptions = [d for e in test.get("exceptions", []) for d in load_yaml_docs(base / e)]

    namespace_labels: dict[str, dict[str, str]] = {}
    operations: dict[tuple[str, str], str] = {}
    subresources: dict[tuple[str, str], tuple[str, str, str]] = {}
    if "variables" in test:
        (values,) = load_yaml_docs(base / test["variables"])
        _check_keys(values, {"apiVersion", "kind", "metadata", "namespaceSelector",
                             "policies", "subresources"}, "Values", profile)
        for sub in values.get("subresources", []):
            # As the CLI (processor/policy_processor.go): a resource of the subresource's kind is a request
            # on `<parent>/<subresource>`; the last mapping for a kind wins.
            s, p = sub["subresource"], sub["parentResource"]
            subresources[(_api_version(s), s["kind"])] = (_api_version(p), p["kind"], s["name"].split("/")[1])
        for sel in values.get("namespaceSelector", []):
            namespace_labels[sel["name"]] = dict(sel.get("labels", {}))
        for pol in values.get("policies", []):
            _check_keys(pol, {"name", "resources"}, "Values.policies[]", profile)
            for res in pol.get("resources", []):
                _check_keys(res, {"name", "values"}, "Values.policies[].resources[]", profile)
                _check_keys(res.get("values", {}), {"request.operation"},
                            "Values.policies[].resources[].values", profile)
                op = res.get("values", {}).get("request.operation")
                if op:
                    operations[(pol["name"], res["name"])] = op

    username, groups = "", []
    if "userinfo" in test:
        (info,) = load_yaml_docs(base / test["userinfo"])
        _check_keys(info, {"apiVersion", "kind", "metadata", "userInfo", "clusterRoles",
                           "roles"}, "UserInfo", profile)
        username = info.get("userInfo", {}).get("username", "")
        groups = list(info.get("userInfo", {}).get("groups", []))

    suite = TestSuite(test_file, policies, resources, namespace_labels, operations,
                      username, groups, exceptions=exceptions, subresources=subresources)
    for res in test["results"]:
        _check_keys(res, {"policy", "rule", "resources", "kind", "result", "generatedResource"},
                    "Test.results[]", profile)
        gen = base / res["generatedResource"] if "generatedResource" in res else None
        for name in res["resources"]:
            suite.cases.append(Case(test_file, res["policy"], res["rule"], name,
                                    res["kind"], res["result"], gen))
    return suite


def _api_version(r: dict) -> str:
    return f"{r['group']}/{r['version']}" if r.get("group") else r["version"]


@dataclass(frozen=True)
class CaseRequest:
    """The admission request a suite case stands for."""

    sent: dict
    """The body the API server sends (e.g. a Scale)."""
    resource: dict
    """The body as Kyverno's rule sees it: a subresource body carries its top-level kind (validate_cel.go)."""
    operation: str
    subresource: str


def case_request(suite: TestSuite, case: Case) -> CaseRequest:
    matches = [r for r in suite.resources
               if r.get("metadata", {}).get("name") == case.resource and r.get("kind") == case.kind]
    if len(matches) != 1:
        raise LookupError(f"{case.test_file}: {len(matches)} resources named {case.kind}/{case.resource}")
    sent = matches[0]
    operation = suite.operations.get((case.policy, case.resource), "CREATE")
    mapped = suite.subresources.get((sent.get("apiVersion", ""), sent.get("kind", "")))
    if mapped is None:
        return CaseRequest(sent, sent, operation, "")
    resource = copy.deepcopy(sent)
    resource["apiVersion"], resource["kind"] = mapped[0], mapped[1]
    return CaseRequest(sent, resource, operation, mapped[2])


def discover_test_files(root: Path) -> list[Path]:
    """Like `kyverno test <dir>`: every kyverno-test.yaml below root, recursively."""
    return sorted(Path(root).rglob("kyverno-test.yaml"))


# -------------------------------------------------------- policy checking

_FILTER_KEYS = {"kinds", "names", "namespaces", "namespaceSelector", "selector", "operations"}
_SELECTOR_KEYS = {"matchLabels", "matchExpressions"}


def _check_block(block: dict, where: str, profile: Profile) -> None:
    _check_keys(block, {"any", "all"}, where, profile)
    for mode in ("any", "all"):
        for j, flt in enumerate(block.get(mode, [])):
            fwhere = f"{where}.{mode}[{j}]"
            _check_keys(flt, {"resources"}, fwhere, profile)
            _check_keys(flt["resources"], _FILTER_KEYS, f"{fwhere}.resources", profile)
            for sel in ("selector", "namespaceSelector"):
                if flt["resources"].get(sel) is not None:
                    _check_keys(flt["resources"][sel], _SELECTOR_KEYS, f"{fwhere}.resources.{sel}", profile)


def check_policy_supported(policy: dict, *, profile: Profile = FULL) -> None:
    if policy.get("apiVersion") != "kyverno.io/v1" or policy.get("kind") != "ClusterPolicy":
        raise UnsupportedPolicyError("only kyverno.io/v1 ClusterPolicy is supported")
    annotations = policy.get("metadata", {}).get("annotations", {}) or {}
    if annotations.get(AUTOGEN_ANNOTATION) != "none":
        raise UnsupportedPolicyError(
            f"unsupported: metadata.annotations[{AUTOGEN_ANNOTATION}] must be 'none' "
            f"(got {annotations.get(AUTOGEN_ANNOTATION)!r}); autogen rules are not evaluated, "
            "list every workload kind explicitly"
        )
    spec = policy["spec"]
    _check_keys(spec, {"validationFailureAction", "background", "rules", "webhookConfiguration",
                       "admission", "generateExisting", "useServerSideApply"}, "spec", profile)
    webhook = spec.get("webhookConfiguration", {}) or {}
    _check_keys(webhook, {"failurePolicy", "timeoutSeconds", "matchConditions"}, "spec.webhookConfiguration",
                profile)
    for j, cond in enumerate(webhook.get("matchConditions", []) or []):
        where = f"spec.webhookConfiguration.matchConditions[{j}]"
        _check_keys(cond, {"name", "expression"}, where, profile)
        if "authorizer" in cond["expression"]:
            raise _unsupported(where, "<authorizer>", profile)
        compile_expr(cond["expression"], where, profile=profile)
    for i, rule in enumerate(spec["rules"]):
        where = f"spec.rules[{i}]"
        _check_keys(rule, {"name", "match", "exclude", "validate", "generate", "skipBackgroundRequests"},
                    where, profile)
        for block in ("match", "exclude"):
            if block in rule:
                _check_block(rule[block], f"{where}.{block}", profile)
        if "validate" not in rule and "generate" not in rule:
            raise _unsupported(where, "<rule without validate>", profile)
        if "validate" in rule and "generate" in rule:
            raise UnsupportedPolicyError(f"{where}: exactly one of validate or generate")
        if "generate" in rule:
            _check_keys(rule["generate"], {"apiVersion", "kind", "name", "namespace", "synchronize",
                                           "data", "generateExisting", "orphanDownstreamOnPolicyDelete"},
                        f"{where}.generate", profile)
            continue
        validate = rule["validate"]
        _check_keys(validate, {"message", "cel", "failureAction"}, f"{where}.validate", profile)
        if "cel" not in validate:
            raise _unsupported(f"{where}.validate", "<validate without cel>", profile)
        _check_keys(validate["cel"], {"variables", "expressions"}, f"{where}.validate.cel", profile)
        for j, var in enumerate(validate["cel"].get("variables", [])):
            _check_keys(var, {"name", "expression"}, f"{where}.validate.cel.variables[{j}]", profile)
            compile_expr(var["expression"], f"{where}.validate.cel.variables[{j}] ({var['name']})",
                         profile=profile)
        for j, exp in enumerate(validate["cel"]["expressions"]):
            ewhere = f"{where}.validate.cel.expressions[{j}]"
            _check_keys(exp, {"expression", "message", "messageExpression"}, ewhere, profile)
            compile_expr(exp["expression"], ewhere, profile=profile)
            if "messageExpression" in exp:
                compile_expr(exp["messageExpression"], f"{ewhere}.messageExpression", profile=profile)


# --------------------------------------------------------------- matching

def _kind_matches(pattern: str, resource: dict, subresource: str = "") -> bool:
    api_version = resource.get("apiVersion", "")
    group, _, version = api_version.rpartition("/")
    parts = pattern.split("/")
    if len(parts) == 1:
        return parts[0] == resource.get("kind") and not subresource
    if len(parts) == 2:
        if parts[0][:1].isupper():  # Kind/subresource, e.g. Pod/ephemeralcontainers
            return parts[0] == resource.get("kind") and parts[1] == subresource
        raise UnsupportedPolicyError(
            f"unsupported kinds entry {pattern!r} (use Kind, Kind/subresource or group/version/Kind)")
    if subresource:
        return False
    if len(parts) == 3:
        pgroup, pversion, pkind = parts
        return (pkind == resource.get("kind") and pgroup == group
                and pversion in ("*", version))
    raise UnsupportedPolicyError(
        f"unsupported kinds entry {pattern!r} (use Kind, Kind/subresource or group/version/Kind)")


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


def _namespace_labels(namespace: str, ns_labels: dict) -> dict[str, str]:
    """A namespace's labels as a selector sees them (the API server always sets metadata.name)."""
    return {**ns_labels.get(namespace, {}), "kubernetes.io/metadata.name": namespace}


@functools.lru_cache(maxsize=1024)
def _wildcard(pattern: str) -> re.Pattern[str]:
    # Kyverno's wildcard.Match (ext/wildcard, github.com/IGLOU-EU/go-wildcard v1): `*` is any run of
    # characters, `?` exactly one, everything else (`[` included) is literal.
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), re.DOTALL)


@functools.lru_cache(maxsize=256)
def _wildcards(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(_wildcard(p) for p in patterns if "*" in p or "?" in p)


def _name_matches(value: str, patterns: list[str]) -> bool:
    """Kyverno's wildcard match of `value` against any of `patterns`. A pattern without a wildcard matches
    only itself, so exact names are looked up at once and only the wildcard patterns are tried one by one
    (a guardrail lists every tenant namespace by name)."""
    return value in patterns or any(w.fullmatch(value) for w in _wildcards(tuple(patterns)))


def _filter_matches(flt: dict, resource: dict, operation: str, ns_labels: dict,
                    subresource: str = "") -> bool:
    desc = flt["resources"]
    meta = resource.get("metadata", {})
    namespace = meta.get("namespace", "")
    if resource.get("kind") == "Namespace":
        namespace = meta.get("name", "")
    if "kinds" in desc and not any(_kind_matches(k, resource, subresource) for k in desc["kinds"]):
        return False
    if "names" in desc and not _name_matches(meta.get("name", ""), desc["names"]):
        return False
    if "namespaces" in desc and not _name_matches(namespace, desc["namespaces"]):
        return False
    if "namespaceSelector" in desc and not selector_matches(desc["namespaceSelector"] or {},
                                                            _namespace_labels(namespace, ns_labels)):
        return False
    if "selector" in desc and not selector_matches(desc["selector"] or {}, meta.get("labels", {})):
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


def exception_applies(exc: dict, policy: str, rule: str, resource: dict, operation: str,
                      ns_labels: dict, subresource: str = "") -> bool:
    spec = exc["spec"]
    _check_keys(spec, {"exceptions", "match", "background"}, "PolicyException.spec")
    named = any(e["policyName"] == policy and
                _name_matches(rule, e.get("ruleNames", []))
                for e in spec["exceptions"])
    return named and _block_matches(spec["match"], resource, operation, ns_labels, subresource)


# --------------------------------------------------------------------- CEL

def _env(k8s_library: bool) -> Any:
    return cel.NewEnv(
        variables={name: cel.Type.DYN for name in
                   ("object", "oldObject", "request", "namespaceObject", "variables")},
        extensions=[ext_optional.ExtOptional(), ext_strings.ExtStrings()],
        functions=k8s_cel_library.function_decls() if k8s_library else [],
    )


_ENVS = {flag: _env(flag) for flag in (False, True)}
_COMPILED: dict[tuple[bool, str], Any] = {}


def compile_expr(expression: str, where: str = "expression", *, profile: Profile = FULL) -> Any:
    """Compile with cel-expr-python; an unknown function/variable raises UnsupportedPolicyError."""
    key = (profile.k8s_library, expression)
    if key not in _COMPILED:
        try:
            _COMPILED[key] = _ENVS[profile.k8s_library].compile(expression)
        except RuntimeError as err:
            library = ("" if profile.k8s_library else
                       f" ({profile.name} evaluates without the Kubernetes CEL library)")
            raise UnsupportedPolicyError(
                f"{where}: CEL does not compile here ({err}); an unknown function or a "
                f"Kubernetes CEL library this evaluator lacks{library}: run `kyverno test`") from err
    return _COMPILED[key]


def _request(resource: dict, operation: str, username: str, groups: list[str],
             subresource: str = "") -> dict:
    meta = resource.get("metadata", {})
    group, _, version = resource.get("apiVersion", "").rpartition("/")
    request = {
        "operation": operation,
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "kind": {"group": group, "version": version, "kind": resource.get("kind", "")},
        "userInfo": {"username": username, "groups": list(groups)},
    }
    # AdmissionRequest.subResource is omitempty: CEL sees no such key on a request for the resource
    # itself (`request.subResource` is an error there; `request.?subResource` is empty).
    if subresource:
        request["subResource"] = subresource
    return request


def webhook_matches(policy: dict, resource: dict, operation: str, old: Optional[dict] = None,
                    username: str = "", groups: Optional[list[str]] = None,
                    subresource: str = "", *, profile: Profile = FULL) -> bool:
    """The policy's webhook `matchConditions` as the API server evaluates them (all must be true).

    An evaluation error raises: with failurePolicy Fail the API server would reject the request.
    """
    data = {"object": copy.deepcopy(resource),
            "oldObject": copy.deepcopy(old) if old is not None else None,
            "request": _request(resource, operation, username, groups or [], subresource)}
    for cond in (policy["spec"].get("webhookConfiguration", {}) or {}).get("matchConditions", []) or []:
        value = compile_expr(cond["expression"], cond["name"], profile=profile).eval(data=data)
        if value.type() != cel.Type.BOOL:
            raise UnsupportedPolicyError(f"matchCondition {cond['name']}: {value.value()}")
        if not value.plain_value():
            return False
    return True


_NO_OLD = object()


def _validate(rule: dict, data: dict[str, Any], profile: Profile) -> Outcome:
    cel_block = rule["validate"]["cel"]
    variables: dict[str, Any] = {}
    for var in cel_block.get("variables", []):
        data["variables"] = variables
        value = compile_expr(var["expression"], var["name"], profile=profile).eval(data=data)
        if value.type() == cel.Type.ERROR:
            return Outcome("fail", f"variable {var['name']}: {value.value()}", error=True)
        variables[var["name"]] = value.plain_value()
    data["variables"] = variables
    for exp in cel_block["expressions"]:
        value = compile_expr(exp["expression"], profile=profile).eval(data=data)
        if value.type() == cel.Type.ERROR:
            return Outcome("fail", f"expression {exp['expression']!r}: {value.value()}", error=True)
        if value.type() != cel.Type.BOOL:
            return Outcome("fail", f"expression {exp['expression']!r} returned {value.type().name()}", error=True)
        if not value.plain_value():
            message = exp.get("message") or rule["validate"].get("message", "")
            if "messageExpression" in exp:
                # As in Kubernetes/Kyverno: a messageExpression that errors falls back to message.
                text = compile_expr(exp["messageExpression"], profile=profile).eval(data=data)
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
    if "{{" in yaml_io.dump(_substitute(gen, resource)):
        raise UnsupportedPolicyError("generate uses variables other than request.object.metadata.name/namespace")
    gen = _substitute(gen, resource)
    obj = {"apiVersion": gen["apiVersion"], "kind": gen["kind"],
           "metadata": {**copy.deepcopy(gen["data"].get("metadata", {})),
                        "name": gen["name"], "namespace": gen["namespace"]},
           **{k: copy.deepcopy(v) for k, v in gen["data"].items() if k != "metadata"}}
    return Outcome("pass", f"generated {gen['kind']}/{gen['namespace']}/{gen['name']}", obj)


# Parity with the real engine (tests/kyverno_parity.py): with $KYVERNO_EVAL_RECORD set to a file, every
# decision evaluate_rule makes is appended to it as one JSON line, to be replayed through the Kyverno CLI.
RECORD_ENV = "KYVERNO_EVAL_RECORD"


def _record(rule: dict, resource: dict, operation: str, username: str, groups: list[str], ns_labels: dict,
            old: Any, subresource: str, policy: Optional[dict], exceptions: Any, outcome: Outcome) -> None:
    path = os.environ.get(RECORD_ENV)
    if not path:
        return
    entry = {"policy": policy, "rule": rule, "resource": resource, "operation": operation,
             "username": username, "groups": groups, "nsLabels": ns_labels,
             "old": None if old is _NO_OLD else old, "oldGiven": old is not _NO_OLD, "subresource": subresource,
             "exceptions": list(exceptions), "result": outcome.result, "message": outcome.message,
             "generated": outcome.generated}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True, default=str) + "\n")


def evaluate_rule(rule: dict, resource: dict, operation: str = "CREATE", username: str = "",
                  groups: Optional[list[str]] = None, ns_labels: Optional[dict] = None,
                  old: Any = _NO_OLD, subresource: str = "", *, policy: Optional[dict] = None,
                  exceptions: Any = (), profile: Profile = FULL, cel_subresource: bool = False) -> Outcome:
    """One rule on one admission request. `policy` names the rule's policy for `exceptions`.

    `subresource` takes part in matching (`Kind/subresource` kinds). A ClusterPolicy's CEL never sees it:
    Kyverno's validate.cel handler builds the request with an empty subresource (and the top-level kind),
    `pkg/engine/handlers/validation/validate_cel.go`; `cel_subresource` (ValidatingPolicy) passes it on."""
    outcome = _evaluate_rule(rule, resource, operation, username, groups, ns_labels, old, subresource,
                             policy=policy, exceptions=exceptions, profile=profile, cel_subresource=cel_subresource)
    _record(rule, resource, operation, username, list(groups or []), ns_labels or {}, old, subresource, policy,
            exceptions, outcome)
    return outcome


def _evaluate_rule(rule: dict, resource: dict, operation: str, username: str, groups: Optional[list[str]],
                   ns_labels: Optional[dict], old: Any, subresource: str, *, policy: Optional[dict],
                   exceptions: Any, profile: Profile, cel_subresource: bool = False) -> Outcome:
    groups, ns_labels = list(groups or []), ns_labels or {}
    if not rule_applies(rule, resource, operation, ns_labels, subresource):
        return Outcome("skip", "rule does not match (match/exclude)")
    for exc in exceptions:
        if policy is None:
            raise ValueError("evaluate_rule: exceptions need the rule's policy")
        if exception_applies(exc, policy["metadata"]["name"], rule["name"], resource, operation, ns_labels,
                             subresource):
            return Outcome("skip", f"PolicyException {exc['metadata'].get('namespace', '')}/"
                                   f"{exc['metadata']['name']} applies")
    if "generate" in rule:
        return _generate(rule, resource)
    namespace = resource.get("metadata", {}).get("namespace", "")
    if old is _NO_OLD:
        # Mirrors the Kyverno CLI: UPDATE without a separate old object uses the resource itself.
        old = copy.deepcopy(resource) if operation == "UPDATE" else None
    else:
        old = copy.deepcopy(old)
    data: dict[str, Any] = {
        "object": copy.deepcopy(resource),
        "oldObject": old,
        "request": _request(resource, operation, username, groups, subresource if cel_subresource else ""),
        "namespaceObject": {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": dict(ns_labels.get(namespace, {}))},
        },
    }
    return _validate(rule, data, profile)


def evaluate_case(suite: TestSuite, case: Case, *, profile: Profile = FULL) -> Outcome:
    policy = next((p for p in suite.policies if p["metadata"]["name"] == case.policy), None)
    if policy is None:
        raise LookupError(f"{case.test_file}: policy {case.policy} not found")
    rule = next((r for r in policy["spec"]["rules"] if r["name"] == case.rule), None)
    if rule is None:
        raise LookupError(f"{case.test_file}: rule {case.rule} not found in {case.policy}")
    req = case_request(suite, case)
    return evaluate_rule(rule, req.resource, req.operation, suite.username, suite.groups, suite.namespace_labels,
                         subresource=req.subresource, policy=policy, exceptions=suite.exceptions, profile=profile)


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


def load_update_cases(path: Path, *, profile: Profile = FULL) -> list[UpdateCase]:
    """`update-cases.yaml`: requests whose old object differs from the object.

    Format: {policy, rule, namespaceLabels?, cases: [{name, username, operation (UPDATE),
    subresource?, object, oldObject, result}]}. Unknown keys raise.
    """
    (doc,) = load_yaml_docs(path)
    _check_keys(doc, {"policy", "rule", "cases"}, f"{path.name}", profile)
    out = []
    for i, c in enumerate(doc["cases"]):
        _check_keys(c, {"name", "username", "operation", "subresource", "object", "oldObject", "result"},
                    f"{path.name}.cases[{i}]", profile)
        out.append(UpdateCase(path, c["name"], c.get("username", ""), c.get("operation", "UPDATE"),
                              c.get("subresource", ""), c["object"], c.get("oldObject"),
                              doc["policy"], doc["rule"], c["result"]))
    return out


def discover_update_files(root: Path) -> list[Path]:
    return sorted(Path(root).rglob("update-cases.yaml"))


# ------------------------------------------- ValidatingPolicy (policies.kyverno.io/v1)

_VP_SPEC_KEYS = {"validationActions", "failurePolicy", "webhookConfiguration", "evaluation", "autogen",
                 "matchConstraints", "matchConditions", "variables", "validations"}


def check_validating_policy_supported(policy: dict, *, profile: Profile = FULL) -> None:
    """Supported: matchConstraints.resourceRules (apiGroups, apiVersions, operations, resources) and a
    namespaceSelector with matchLabels / matchExpressions In|NotIn; matchConditions; variables;
    validations (expression, message). Anything else raises. The profile only selects the CEL library."""
    if policy.get("apiVersion") != "policies.kyverno.io/v1" or policy.get("kind") != "ValidatingPolicy":
        raise UnsupportedPolicyError("only policies.kyverno.io/v1 ValidatingPolicy is supported here")
    spec = policy["spec"]
    _check_keys(spec, _VP_SPEC_KEYS, "spec")
    if spec.get("autogen", {}).get("podControllers", {}).get("controllers", []) != []:
        raise _unsupported("spec.autogen.podControllers", "controllers (autogen rules are not evaluated)", profile)
    mc = spec["matchConstraints"]
    _check_keys(mc, {"resourceRules", "namespaceSelector"}, "spec.matchConstraints")
    for i, r in enumerate(mc["resourceRules"]):
        _check_keys(r, {"apiGroups", "apiVersions", "operations", "resources"},
                    f"spec.matchConstraints.resourceRules[{i}]")
    sel = mc.get("namespaceSelector", {})
    _check_keys(sel, _SELECTOR_KEYS, "spec.matchConstraints.namespaceSelector")
    for e in sel.get("matchExpressions", []):
        if e.get("operator") not in ("In", "NotIn"):
            raise _unsupported("spec.matchConstraints.namespaceSelector.matchExpressions", e.get("operator"),
                               profile)
    for j, cond in enumerate(spec.get("matchConditions", [])):
        _check_keys(cond, {"name", "expression"}, f"spec.matchConditions[{j}]")
        compile_expr(cond["expression"], f"spec.matchConditions[{j}]", profile=profile)
    for j, var in enumerate(spec.get("variables", [])):
        _check_keys(var, {"name", "expression"}, f"spec.variables[{j}]")
        compile_expr(var["expression"], f"spec.variables[{j}]", profile=profile)
    for j, val in enumerate(spec["validations"]):
        _check_keys(val, {"expression", "message"}, f"spec.validations[{j}]")
        compile_expr(val["expression"], f"spec.validations[{j}]", profile=profile)


def _plural(kind: str) -> str:
    return kind.lower() + "s"  # true for every kind the project's policies match


def evaluate_validating_policy(policy: dict, resource: dict, operation: str, username: str,
                               ns_labels: dict, old: Any = _NO_OLD, subresource: str = "", *,
                               profile: Profile = FULL) -> Outcome:
    check_validating_policy_supported(policy, profile=profile)
    spec = policy["spec"]
    group, _, _ = resource.get("apiVersion", "").rpartition("/")
    resource_name = _plural(resource["kind"]) + (f"/{subresource}" if subresource else "")
    rules = spec["matchConstraints"]["resourceRules"]
    if not any(group in r["apiGroups"] and resource_name in r["resources"] and operation in r["operations"]
               for r in rules):
        return Outcome("skip", "matchConstraints.resourceRules")
    namespace = resource.get("metadata", {}).get("namespace", "")
    if not selector_matches(spec["matchConstraints"].get("namespaceSelector", {}),
                            _namespace_labels(namespace, ns_labels)):
        return Outcome("skip", "namespaceSelector")
    if old is _NO_OLD:
        old = copy.deepcopy(resource) if operation == "UPDATE" else None
    if not webhook_matches({"spec": {"webhookConfiguration": {"matchConditions": spec.get("matchConditions", [])}}},
                           resource, operation, old, username, [], subresource, profile=profile):
        return Outcome("skip", "matchConditions")
    rule = {"name": policy["metadata"]["name"], "match": {"any": [{"resources": {}}]},
            "validate": {"cel": {"variables": spec.get("variables", []), "expressions": spec["validations"]}}}
    return evaluate_rule(rule, resource, operation, username, [], ns_labels, old=old, subresource=subresource,
                         profile=profile, cel_subresource=True)
