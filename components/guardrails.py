"""The guardrail catalog: Kyverno cost and security policies for LLM workloads (policies/kyverno/guardrail-*).

Each policy file in the repository is the policy and carries the catalog's defaults; this
module only chooses its parameters for the stack, which components/policy_model.py applies
(loader and setters, importable from here too): which policies are on, Audit or Enforce per
policy, the scope (namespaces and selectors), the excluded namespaces and the CEL variables
whose expressions become literals from the config. The known security-baseline exceptions
become PolicyExceptions in the kyverno namespace.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.config import GuardrailPolicy, GuardrailsConfig, ReserveAcceleratorNodesPolicy, StackConfig
from components.kyverno import with_ready_wait
from components.network_policy import dns_rules
from components.policy_model import (  # noqa: F401 (re-exported for the catalog's callers)
    POLICY_DIR,
    ROOT,
    cel_literal,
    load_policy,
    policy_file,
    set_exclude,
    set_failure_action,
    set_params,
    set_scope,
)

EXCEPTION_NAMESPACE = "kyverno"
EGRESS_POLICY = "guardrail-egress-lockdown"
# Optional mutate companion of the ownership policy (guardrails.ownership.stampOwner).
STAMP_OWNER_POLICY = "guardrail-stamp-owner"

# config field -> policy name (folder and file), in catalog order
CATALOG: dict[str, str] = {
    "gpu_cap_per_pod": "guardrail-gpu-cap-per-pod",
    "accelerator_overcommit": "guardrail-no-accelerator-overcommit",
    "approved_models": "guardrail-approved-models",
    "memory_bounds": "guardrail-memory-bounds",
    "security_baseline": "guardrail-security-baseline",
    "trusted_registries": "guardrail-trusted-registries",
    "require_limits": "guardrail-require-limits",
    "ownership": "guardrail-ownership",
    "reserve_accelerator_nodes": "guardrail-reserve-accelerator-nodes",
    "egress_lockdown": EGRESS_POLICY,
}


def glob_regex(glob: str) -> str:
    """An anchored RE2 expression for a glob with `*` and `?` (Secret names hold no other special character)."""
    return "^" + glob.replace(".", "[.]").replace("*", ".*").replace("?", ".") + "$"


def default_namespaces(settings: StackConfig) -> list[str]:
    """Default scope: every namespace the platform serves models in (SR1's protected namespaces: `serving`,
    `inference`, `kserve`, `llm-d` by default, where the KServe and llm-d operators create their Deployments
    and Pods) and every tenant namespace."""
    if settings.guardrails.namespaces:
        return list(settings.guardrails.namespaces)
    platform = ["serving", *settings.network_policy.protected_namespaces]
    return list(dict.fromkeys([*platform, *settings.tenants]))


def policy_namespaces(key: str, cfg: Any, settings: StackConfig) -> list[str]:
    """A policy's namespaces: its own, else every namespace for the node reservation (nodes are shared by all
    of them), else the default scope."""
    if cfg.namespaces:
        return list(cfg.namespaces)
    return ["*"] if key == "reserve_accelerator_nodes" else default_namespaces(settings)


def accelerator_node_pools(settings: StackConfig) -> list[str]:
    if settings.cluster is None:
        return []
    return [p.name for p in settings.cluster.node_pools if p.gpu is not None]


def _params(key: str, cfg: Any, settings: StackConfig) -> dict[str, Any]:
    accelerators = list(settings.kyverno.accelerator_resources)
    if key == "gpu_cap_per_pod":
        return {"accelerators": accelerators, "maxAcceleratorsPerPod": cfg.max_accelerators_per_pod,
                "acceleratorDeviceClasses": list(cfg.accelerator_device_classes),
                "maxAcceleratorsPerClaim": cfg.claim_cap}
    if key == "accelerator_overcommit":
        return {"accelerators": accelerators}
    if key == "approved_models":
        return {"approvedModels": list(cfg.models)}
    if key == "memory_bounds":
        return {"requestFloor": cfg.request_floor, "limitCeiling": cfg.limit_ceiling}
    if key == "security_baseline":
        return {"requiredDrop": cfg.required_drop, "allowedCapabilities": list(cfg.allowed_capabilities)}
    if key == "trusted_registries":
        return {"registries": list(cfg.registries), "requireDigest": cfg.require_digest}
    if key == "require_limits":
        return {"requireCpuLimit": cfg.require_cpu_limit}
    if key == "ownership":
        return {"requiredLabels": list(cfg.required_labels), "inferenceLabels": dict(cfg.inference_labels),
                "modelAnnotations": list(cfg.model_annotations), "versionAnnotation": cfg.version_annotation,
                "versionPattern": cfg.version_pattern,
                "secretNameRegexes": [glob_regex(g) for g in cfg.secret_name_patterns]}
    if key == "reserve_accelerator_nodes":
        return {"accelerators": accelerators, "allowedServiceAccounts": list(cfg.allowed_service_accounts),
                "acceleratorNodePools": accelerator_node_pools(settings)}
    raise KeyError(key)


def egress_rules(settings: StackConfig) -> list[dict[str, Any]]:
    """Egress of the lockdown NetworkPolicy: the cluster's DNS paths (`clusterDns`, the same rules as the agent and
    egress-locked serving policies), then the extras (CIDRs, or namespace/pod peers for in-cluster services)."""
    rules = dns_rules(settings.cluster_dns)
    for dest in settings.guardrails.egress_lockdown.allowed_egress:
        if dest.cidr is not None:
            peer: dict[str, Any] = {"ipBlock": {"cidr": dest.cidr}}
        else:
            # A namespace and/or pod peer: the only way to reach an in-cluster service such as LiteLLM.
            peer = {}
            if dest.namespace_selector:
                peer["namespaceSelector"] = {"matchLabels": dict(dest.namespace_selector)}
            if dest.pod_selector:
                peer["podSelector"] = {"matchLabels": dict(dest.pod_selector)}
        rules.append({"to": [peer], "ports": [{"protocol": dest.protocol, "port": p} for p in dest.ports]})
    return rules


def build_policies(settings: StackConfig) -> list[dict[str, Any]]:
    """The enabled catalog policies as this stack applies them."""
    g: GuardrailsConfig = settings.guardrails
    out = []
    for key, name in CATALOG.items():
        cfg = getattr(g, key)
        if not cfg.enabled:
            continue
        policy = load_policy(name)
        if key == "egress_lockdown":
            policy = copy.deepcopy(policy)
            (rule,) = policy["spec"]["rules"]
            (flt,) = rule["match"]["any"]
            flt["resources"]["selector"] = {"matchLabels": dict(cfg.namespace_selector)}
            rule["generate"]["data"]["spec"]["egress"] = egress_rules(settings)
        else:
            assert isinstance(cfg, GuardrailPolicy)
            policy = set_params(policy, _params(key, cfg, settings))
            policy = set_scope(policy, policy_namespaces(key, cfg, settings),
                               cfg.namespace_selector, cfg.object_selector)
            if isinstance(cfg, ReserveAcceleratorNodesPolicy):
                policy = set_exclude(policy, cfg.exclude_namespaces)
            policy = set_failure_action(policy, cfg.failure_action)
        out.append(policy)
        if key == "ownership" and cfg.stamp_owner:
            stamp = load_policy(STAMP_OWNER_POLICY)
            out.append(set_scope(stamp, cfg.namespaces or default_namespaces(settings),
                                 cfg.namespace_selector, cfg.object_selector))
    # `pulumi up` fails unless Kyverno reports each policy Ready, as for SR2's policy.
    return [with_ready_wait(p) for p in out]


def _exception(name: str, policy: str, rules: list[str], kinds: list[str], namespace: str,
               names: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "kyverno.io/v2",
        "kind": "PolicyException",
        "metadata": {"name": name, "namespace": EXCEPTION_NAMESPACE,
                     "labels": {"app.kubernetes.io/part-of": "llm-platform-guardrails"}},
        "spec": {
            "background": True,
            "exceptions": [{"policyName": policy, "ruleNames": list(rules)}],
            "match": {"any": [{"resources": {"kinds": list(kinds), "namespaces": [namespace],
                                             "names": list(names)}}]},
        },
    }


def build_exceptions(settings: StackConfig) -> list[dict[str, Any]]:
    """PolicyExceptions, each scoped by name and one namespace: the security baseline's known exceptions and the
    operator-staged models (approved-models)."""
    g = settings.guardrails
    out = []
    if g.security_baseline.enabled:
        out += [_exception(e.name, CATALOG["security_baseline"], list(e.rules), e.kinds, e.namespace, e.names)
                for e in g.security_baseline.exceptions]
    if g.approved_models.enabled:
        # The policy's only rule; a PolicyException names the rules it lifts.
        (rule,) = load_policy(CATALOG["approved_models"])["spec"]["rules"]
        out += [_exception(e.name, CATALOG["approved_models"], [rule["name"]], e.kinds, e.namespace, e.names)
                for e in g.approved_models.exceptions]
    return out


def summary(settings: StackConfig) -> list[dict[str, str]]:
    """One row per catalog policy: enabled, action, scope (shown by `make synth`)."""
    g = settings.guardrails
    rows = []
    for key, name in CATALOG.items():
        cfg = getattr(g, key)
        if key == "egress_lockdown":
            scope = "namespaces labelled " + ",".join(f"{k}={v}" for k, v in cfg.namespace_selector.items())
            action = "generate"
        else:
            names = policy_namespaces(key, cfg, settings)
            scope = "every namespace" if names == ["*"] else "namespaces " + ",".join(names)
            if key == "reserve_accelerator_nodes" and cfg.exclude_namespaces:
                scope += " except " + ",".join(cfg.exclude_namespaces)
            if cfg.namespace_selector:
                scope += " with labels " + ",".join(f"{k}={v}" for k, v in cfg.namespace_selector.items())
            if cfg.object_selector:
                scope += "; objects labelled " + ",".join(f"{k}={v}" for k, v in cfg.object_selector.items())
            action = cfg.failure_action
        rows.append({"policy": name, "enabled": "yes" if g.enabled and cfg.enabled else "no",
                     "action": action, "scope": scope})
    return rows


@dataclass
class GuardrailsArgs:
    """Inputs of :class:`Guardrails`."""

    settings: StackConfig
    """The validated stack config (guardrails, tenants, accelerator resources, node pools)."""
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """The Kyverno release (its CRDs and admission controller must exist first)."""


class Guardrails(pulumi.ComponentResource):
    """The enabled guardrail ClusterPolicies and the security baseline's PolicyExceptions."""

    def __init__(self, name: str, args: GuardrailsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:security:Guardrails", name, None, opts)
        after = pulumi.ResourceOptions(parent=self, depends_on=args.depends_on)
        policies = build_policies(args.settings)
        self.policies = [
            k8s.apiextensions.CustomResource(
                p["metadata"]["name"], api_version=p["apiVersion"], kind=p["kind"],
                metadata=p["metadata"], spec=p["spec"], opts=after,
            )
            for p in policies
        ]
        self.exceptions = [
            k8s.apiextensions.CustomResource(
                f"{e['metadata']['namespace']}-{e['metadata']['name']}", api_version=e["apiVersion"],
                kind=e["kind"], metadata=e["metadata"], spec=e["spec"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, *self.policies]),
            )
            for e in build_exceptions(args.settings)
        ]
        self.register_outputs({
            "policies": {p["metadata"]["name"]: _action(p) for p in policies},
            "exceptions": [e["metadata"]["name"] for e in build_exceptions(args.settings)],
        })


def _action(policy: dict[str, Any]) -> str:
    rules = policy["spec"]["rules"]
    actions = {r["validate"]["failureAction"] for r in rules if "validate" in r}
    if not actions:
        return "mutate" if any("mutate" in r for r in rules) else "generate"
    return actions.pop() if len(actions) == 1 else "mixed"
