"""Tenant boundaries: admission rules that keep tenants from undoing the platform's isolation.

Two ClusterPolicies, each a file under ``policies/kyverno/`` holding the defaults; this module chooses their
parameters (CEL variables, webhook matchConditions, failure action; components/policy_model.py applies them)
and which rules the stack needs (docs/workload-isolation.md, "Doors around the policies"):

* ``restrict-network-policy-writes``: NetworkPolicies are additive, so in the agent namespaces
  (``agentIsolation.namespaces``) and the egress-locked namespaces (the ``guardrails.egressLockdown``
  label) only the platform's identities may create, change or delete one: ``tenantBoundaries.
  networkPolicyWriters`` plus Kyverno's background controller, the namespace controller, the garbage
  collector and ``system:masters``. Registered when agent isolation or the egress lockdown is on.
* ``restrict-platform-gateway-routes``: HTTPRoutes and GRPCRoutes outside the platform's namespaces
  (``networkPolicy.protectedNamespaces`` + ``tenantBoundaries.routeNamespaces``) may not name a platform
  Gateway (``tenantBoundaries.platformGateways``) in ``spec.parentRefs``. Registered with ``security``.

Both take ``tenantBoundaries.failureAction`` (default Enforce, whatever ``kyverno.failureAction`` says: they never
judge the platform's own writes) and make ``pulumi up`` wait until Kyverno reports them Ready.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi

from components import policy_model
from components.config import (
    BUILTIN_NETWORK_POLICY_WRITER_GROUPS,
    BUILTIN_NETWORK_POLICY_WRITERS,
    StackConfig,
)
from components.kyverno import with_ready_wait
from components.policy_model import POLICY_DIR, ROOT, cel_literal, policy_file  # noqa: F401 (callers import them here)

NETWORK_POLICY_GUARD = "restrict-network-policy-writes"
ROUTE_GUARD = "restrict-platform-gateway-routes"
AGENT_RULE = "agent-namespaces"
LOCKDOWN_RULE = "egress-locked-namespaces"


def network_policy_writers(settings: StackConfig) -> tuple[list[str], list[str]]:
    """User names and groups that may write NetworkPolicies in agent and egress-locked namespaces."""
    users = list(dict.fromkeys([*BUILTIN_NETWORK_POLICY_WRITERS, *settings.tenant_boundaries.network_policy_writers]))
    return users, list(BUILTIN_NETWORK_POLICY_WRITER_GROUPS)


def network_policy_guard(settings: StackConfig) -> Optional[dict[str, Any]]:
    """``restrict-network-policy-writes`` for this stack, or None when no namespace needs it."""
    ai = settings.agent_isolation
    lockdown = settings.guardrails.enabled and settings.guardrails.egress_lockdown.enabled
    if not settings.security or not (ai.enabled or lockdown):
        return None
    policy = policy_model.load_policy(NETWORK_POLICY_GUARD)
    users, groups = network_policy_writers(settings)
    rules = []
    for rule in policy["spec"]["rules"]:
        (flt,) = rule["match"]["any"]
        if rule["name"] == AGENT_RULE:
            if not ai.enabled:
                continue
            flt["resources"]["namespaces"] = list(ai.namespaces)
        elif rule["name"] == LOCKDOWN_RULE:
            if not lockdown:
                continue
            flt["resources"]["namespaceSelector"] = {
                "matchLabels": dict(settings.guardrails.egress_lockdown.namespace_selector)}
        rules.append(rule)
    policy["spec"]["rules"] = rules
    writer = (f"!(request.userInfo.username in {cel_literal(users)}) && "
              f"!(has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in {cel_literal(groups)}))")
    return policy_model.apply(policy, params={"writers": users, "writerGroups": groups},
                              match_conditions={"not-platform-writer": writer},
                              failure_action=settings.tenant_boundaries.failure_action)


def route_namespaces(settings: StackConfig) -> list[str]:
    """Namespaces whose routes may attach to the platform Gateways."""
    return list(dict.fromkeys([*settings.network_policy.protected_namespaces,
                               *settings.tenant_boundaries.route_namespaces]))


def route_guard(settings: StackConfig) -> Optional[dict[str, Any]]:
    """``restrict-platform-gateway-routes`` for this stack (None with ``security: false``)."""
    if not settings.security:
        return None
    namespaces = route_namespaces(settings)
    gateways = [f"{g.namespace}/{g.name}" for g in settings.tenant_boundaries.platform_gateways]
    return policy_model.apply(policy_model.load_policy(ROUTE_GUARD),
                              params={"platformGateways": gateways, "routeNamespaces": namespaces},
                              match_conditions={"not-platform-namespace": f"!(request.namespace in {cel_literal(namespaces)})"},
                              failure_action=settings.tenant_boundaries.failure_action)


def build_all(settings: StackConfig) -> list[dict[str, Any]]:
    """The stack's tenant-boundary ClusterPolicies, each waiting for Kyverno's Ready."""
    return [with_ready_wait(p) for p in (network_policy_guard(settings), route_guard(settings)) if p is not None]


@dataclass
class TenantBoundariesArgs:
    """Inputs of :class:`TenantBoundaries`."""

    settings: StackConfig
    """The validated stack config."""
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """The Kyverno release (CRDs and admission controller first)."""


class TenantBoundaries(pulumi.ComponentResource):
    """The tenant-boundary ClusterPolicies of :func:`build_all`."""

    def __init__(self, name: str, args: TenantBoundariesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:security:TenantBoundaries", name, None, opts)
        import pulumi_kubernetes as k8s

        policies = build_all(args.settings)
        self.policies = [
            k8s.apiextensions.CustomResource(
                p["metadata"]["name"], api_version=p["apiVersion"], kind=p["kind"], metadata=p["metadata"],
                spec=copy.deepcopy(p["spec"]),
                opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
            )
            for p in policies
        ]
        self.register_outputs({"policies": [p["metadata"]["name"] for p in policies]})
