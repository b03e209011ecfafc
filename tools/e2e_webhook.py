"""The ValidatingWebhookConfiguration Kyverno v1.18.1 would write for the policies in a cluster (`make e2e`).

No Kyverno pod runs on the e2e control plane (no kubelet), so nothing writes Kyverno's webhook configuration;
this module writes it the way Kyverno's webhook controller does, from the live ClusterPolicies and the live
`kyverno` ConfigMap, so the real API server can compile and cost its matchConditions and then route requests
by them. Followed (kyverno/kyverno v1.18.1, pkg/controllers/webhook): `buildForPoliciesValidation` (one shared
`ignore` and `fail` webhook, one "fine-grained" webhook per policy with `spec.webhookConfiguration.matchConditions`),
`mergeWebhook` and `collectResourceDescriptions` (kinds x operations; generate rules: all four operations plus
create/update/delete of the generated kind), `FindResources` through discovery (kinds the API server does not
serve are skipped, as Kyverno logs "resource not found"), `buildRulesWithOperations`, `webhookNameAndPath`,
`capTimeout`, `newClientConfig` (service `kyverno/kyverno-svc:443`). Simplified: no CA bundle (Kyverno injects its
own), the exclude-by-kind subtraction is not modelled (our policies have no such exclude), autogen is off in
every policy of this repository (`pod-policies.kyverno.io/autogen-controllers: none`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from tools.e2e_kube import Kube

NAME = "kyverno-resource-validating-webhook-cfg"
WEBHOOK = "validate.kyverno.svc"
PATH = "/validate"
ALL_OPS = ("CREATE", "UPDATE", "DELETE", "CONNECT")
CREATE_UPDATE_DELETE = ("CREATE", "UPDATE", "DELETE")
DEFAULT_TIMEOUT = 10  # the admission controller's --webhookTimeout default


def parse_kind_selector(selector: str) -> tuple[str, str, str, str]:
    """kubeutils.ParseKindSelector: (group, version, kind, subresource), `*` for what is not given."""
    parts = selector.split("/")
    parts = parts[:-1] + parts[-1].split(".")
    if len(parts) == 1:
        return "*", "*", parts[0], ""
    if len(parts) == 2:
        if parts == ["*", "*"]:
            return "*", "*", "*", "*"
        if parts[0] == "*" and parts[1].lower() == parts[1]:
            return "*", "*", parts[0], parts[1]
        if parts[0] == "*" or (parts[0].startswith("v") and parts[0][1:2].isdigit()):
            return "*", parts[0], parts[1], ""
        return "*", "*", parts[0], parts[1]
    if len(parts) == 3:
        if parts[0] == "*" or (parts[0].startswith("v") and parts[0][1:2].isdigit()):
            return "*", parts[0], parts[1], parts[2]
        return parts[0], parts[1], parts[2], ""
    return parts[0], parts[1], parts[2], parts[3]


def _kinds(policy: dict[str, Any]) -> dict[str, set[str]]:
    """kind selector -> operations, over every rule (collectResourceDescriptions, validate or generate)."""
    out: dict[str, set[str]] = {}
    for rule in policy["spec"].get("rules", []):
        if "generate" in rule:
            defaults: tuple[str, ...] = ALL_OPS
        elif "validate" in rule:
            defaults = ALL_OPS  # updateValidate=true in the validating webhook
        else:
            continue
        match = rule.get("match") or {}
        filters: list[dict[str, Any]] = [match["resources"]] if match.get("resources") else []
        filters += [f.get("resources") or {} for f in match.get("any", []) + match.get("all", [])]
        for flt in filters:
            for kind in flt.get("kinds") or []:
                out.setdefault(kind, set()).update(flt.get("operations") or defaults)
        if "generate" in rule and rule["generate"].get("kind"):
            out.setdefault(rule["generate"]["kind"], set()).update(CREATE_UPDATE_DELETE)
    return out


class _Webhook:
    def __init__(self, failure_policy: str, match_conditions: list[dict[str, Any]], policy: str = ""):
        self.failure_policy = failure_policy
        self.match_conditions = match_conditions
        self.policy = policy
        self.timeout = DEFAULT_TIMEOUT
        # (group, version, resource, subresource, scope) -> operations
        self.rules: dict[tuple[str, str, str, str, str], set[str]] = {}

    def merge(self, kube: Kube, policy: dict[str, Any]) -> list[str]:
        """Add the policy's kinds; returns the kind selectors the API server does not serve."""
        missing = []
        for selector, ops in _kinds(policy).items():
            group, version, kind, sub = parse_kind_selector(selector)
            found = kube.find(group, version, kind, sub)
            if not found:
                missing.append(selector)
            for g, v, res, s, namespaced in found:
                key = (g, v, res, s, "Namespaced" if namespaced else "*")
                self.rules.setdefault(key, set()).update(ops)
        timeout = ((policy["spec"].get("webhookConfiguration") or {}).get("timeoutSeconds")
                   or policy["spec"].get("webhookTimeoutSeconds"))
        if timeout and timeout > self.timeout:
            self.timeout = timeout
        return missing

    def build(self, selectors: dict[str, Any]) -> dict[str, Any]:
        name = f"{WEBHOOK}-{self.failure_policy.lower()}"
        path = f"{PATH}/{self.failure_policy.lower()}"
        if self.policy:
            name += f"-finegrained-{self.policy}"
            path += f"/finegrained/{self.policy}"
        grouped: dict[tuple[str, str, str], dict[str, set[str]]] = {}
        for (g, v, res, sub, scope), ops in self.rules.items():
            grouped.setdefault((g, v, scope), {})[f"{res}/{sub}" if sub else res] = ops
        rules = []
        for (g, v, scope), resources in grouped.items():
            by_ops: dict[tuple[str, ...], list[str]] = {}
            for res, ops in resources.items():
                by_ops.setdefault(tuple(sorted(ops)), []).append(res)
            for op_list, res_list in by_ops.items():
                rules.append({"apiGroups": [g], "apiVersions": [v], "resources": sorted(res_list),
                              "operations": list(op_list), "scope": scope})
        rules.sort(key=lambda r: (r["apiGroups"], r["apiVersions"], r["resources"], r["operations"], r["scope"]))
        webhook: dict[str, Any] = {
            "name": name,
            "clientConfig": {"service": {"namespace": "kyverno", "name": "kyverno-svc", "path": path, "port": 443}},
            "rules": rules,
            "failurePolicy": self.failure_policy,
            "sideEffects": "NoneOnDryRun",  # admission reports on (the chart's default)
            "admissionReviewVersions": ["v1"],
            "namespaceSelector": selectors.get("namespaceSelector"),
            "objectSelector": selectors.get("objectSelector") or {},
            "timeoutSeconds": min(self.timeout, 30),
            "matchPolicy": "Equivalent",
        }
        if self.match_conditions:
            webhook["matchConditions"] = self.match_conditions
        return {k: v for k, v in webhook.items() if v is not None}


def build(kube: Kube) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """Kyverno's resource validating webhook configuration for the ClusterPolicies in the cluster, notes (kinds
    skipped because the API server does not serve them), and where each live ClusterPolicy went: the name of
    its webhook, or why it has none (`admission: false`, no validate or generate rule: Kyverno's mutating
    webhook, not modelled here; no kind the API server serves)."""
    cm = kube.request("GET", "/api/v1/namespaces/kyverno/configmaps/kyverno")
    data = (cm.body or {}).get("data") or {} if cm.ok else {}
    selectors = json.loads(data.get("webhooks") or "{}")
    shared_conditions = json.loads(data.get("matchConditions") or "[]")
    ignore, fail = _Webhook("Ignore", shared_conditions), _Webhook("Fail", shared_conditions)
    fine: list[_Webhook] = []
    notes = []
    placed: dict[str, str] = {}
    targets: dict[str, _Webhook] = {}
    policies = kube.request("GET", "/apis/kyverno.io/v1/clusterpolicies").body.get("items", [])
    for policy in sorted(policies, key=lambda p: p["metadata"]["name"]):
        spec, name = policy["spec"], policy["metadata"]["name"]
        if spec.get("admission") is False:
            placed[name] = NOT_PLACED_ADMISSION_OFF
            continue
        if not any("validate" in r or "generate" in r for r in spec.get("rules", [])):
            placed[name] = NOT_PLACED_MUTATE_ONLY
            continue
        wc = spec.get("webhookConfiguration") or {}
        failure = wc.get("failurePolicy") or spec.get("failurePolicy") or "Fail"
        if wc.get("matchConditions"):
            target = _Webhook(failure, wc["matchConditions"], name)
            fine.append(target)
        else:
            target = ignore if failure == "Ignore" else fail
        missing = target.merge(kube, policy)
        if missing:
            notes.append(f"{name}: not served here, skipped as Kyverno does: {', '.join(missing)}")
        if len(missing) == len(_kinds(policy)):
            placed[name] = NOT_PLACED_NOT_SERVED
        else:
            targets[name] = target
    fine.sort(key=lambda w: (w.failure_policy != "Ignore", w.policy))
    webhooks = []
    for w in [ignore, fail, *fine]:
        if w.rules:
            webhooks.append(w.build(selectors))
            placed.update({p: webhooks[-1]["name"] for p, t in targets.items() if t is w})
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": NAME, "labels": {"webhook.kyverno.io/managed-by": "kyverno"}},
        "webhooks": webhooks,
    }, notes, placed


NOT_PLACED_ADMISSION_OFF = "no webhook: admission is off"
NOT_PLACED_MUTATE_ONLY = "no validating webhook: no validate or generate rule (Kyverno's mutating webhook, not modelled)"
NOT_PLACED_NOT_SERVED = "no webhook: the API server serves none of its kinds"


# ------------------------------------------------------------------------------------------ stand-ins

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
GATEWAY_API_ROUTES = {"HTTPRoute": ("v1", "v1beta1"), "GRPCRoute": ("v1",)}
"""The route kinds restrict-platform-gateway-routes matches, at the versions Gateway API v1.2+ serves them."""


def gateway_api_stand_ins() -> list[dict[str, Any]]:
    """Schema-less CRDs for the Gateway API route kinds: only what discovery needs to serve them (the local
    control plane has no Gateway API; GKE installs it)."""
    out = []
    for kind, versions in GATEWAY_API_ROUTES.items():
        plural = kind.lower() + "s"
        out.append({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            # A *.k8s.io group needs this annotation; "unapproved" is accepted and says what these are.
            "metadata": {"name": f"{plural}.{GATEWAY_API_GROUP}",
                         "annotations": {"api-approved.kubernetes.io": "unapproved, a stand-in for the e2e"}},
            "spec": {"group": GATEWAY_API_GROUP, "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                     "versions": [{"name": v, "served": True, "storage": i == 0,
                                   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
                                  for i, v in enumerate(versions)]},
        })
    return out


def install(kube: Kube, crds: list[dict[str, Any]], timeout: float = 30.0) -> list[str]:
    """Create ``crds`` and wait until discovery serves each kind; problems, if any."""
    problems = []
    for crd in crds:
        r = kube.create(crd)
        if not r.ok and r.status != 409:
            problems.append(f"CRD {crd['metadata']['name']}: HTTP {r.status} {r.message[:200]}")
    deadline = time.monotonic() + timeout
    for crd in crds:
        spec = crd["spec"]
        while True:
            kube.forget_discovery()
            if all(kube.find(spec["group"], v["name"], spec["names"]["kind"]) for v in spec["versions"]):
                break
            if time.monotonic() > deadline:
                problems.append(f"CRD {crd['metadata']['name']}: not served after {timeout:.0f} s")
                break
            time.sleep(0.3)
    return problems


# ------------------------------------------------------------------------------------------ coverage


def coverage(rendered: list[dict[str, Any]], placed: dict[str, str], vwc: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(notes, problems): every ClusterPolicy the stack renders must be live and, when it validates or generates,
    in Kyverno's configuration; one with ``webhookConfiguration.matchConditions`` in its own webhook carrying
    exactly those, so the API server compiles and costs them."""
    notes: list[str] = []
    problems: list[str] = []
    names = sorted(p["metadata"]["name"] for p in rendered)
    if not names:
        problems.append("the stack renders no ClusterPolicy: nothing to check")
    missing = [n for n in names if n not in placed]
    extra = sorted(set(placed) - set(names))
    if missing:
        problems.append(f"rendered but not live: {', '.join(missing)}")
    if extra:
        notes.append(f"live but not rendered by this stack: {', '.join(extra)}")
    webhooks = {w["name"]: w for w in vwc["webhooks"]}
    fine = []
    for policy in sorted(rendered, key=lambda p: p["metadata"]["name"]):
        name = policy["metadata"]["name"]
        where = placed.get(name)
        if where is None:
            continue
        conditions = (policy["spec"].get("webhookConfiguration") or {}).get("matchConditions")
        if where not in webhooks:
            if where in (NOT_PLACED_MUTATE_ONLY, NOT_PLACED_ADMISSION_OFF):
                notes.append(f"{name}: {where}")
            else:
                problems.append(f"{name}: {where}")
            continue
        if conditions:
            if "-finegrained-" not in where or webhooks[where].get("matchConditions") != conditions:
                problems.append(f"{name}: its matchConditions are not those of its webhook {where}")
            else:
                fine.append(name)
    covered = [n for n in names if placed.get(n) in webhooks]
    notes.append(f"{len(names)} rendered ClusterPolicies, {len(covered)} in Kyverno's validating webhooks; "
                 f"{len(fine)} with matchConditions, each in its own webhook: {', '.join(fine) or 'none'}")
    return notes, problems
