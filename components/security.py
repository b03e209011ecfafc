"""The security capability group (SR1 + SR2), registered only when `security: true`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pulumi

from components.cluster_access import ClusterAccess
from components.config import StackConfig
from components.guardrails import Guardrails, GuardrailsArgs
from components.kyverno import Kyverno, KyvernoArgs, skip_policy_await
from components.network_policy import NetworkPolicies, NetworkPoliciesArgs
from components.tenants import TenantNamespaces, TenantNamespacesArgs


@dataclass
class SecurityArgs:
    """Inputs of :class:`Security`."""

    settings: StackConfig
    """The validated stack config."""
    access: ClusterAccess = field(default_factory=ClusterAccess)
    """How the destroy-time webhook cleanup reaches the cluster."""
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """Cluster resources that must exist first (node pools, firewall)."""
    namespaces: dict[str, pulumi.Resource] = field(default_factory=dict)
    """Namespace resources (created or adopted) the SR1 policies are written into, by name."""
    adopting_provider: Optional[pulumi.ProviderResource] = None
    """Kubernetes provider with ``upsertExistingObjects`` (create-or-adopt tenant namespaces)."""
    api_server_endpoint: Optional[pulumi.Input[str]] = None
    """Endpoint address of a cluster this stack creates (the egress-locked profile's API server destination)."""


class Security(pulumi.ComponentResource):
    """SR1 NetworkPolicies, SR2 Kyverno + policy, and tenant onboarding."""

    def __init__(self, name: str, args: SecurityArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:security:Security", name, None, opts)
        s = args.settings
        # make e2e only (kyverno.install.skipAwait): no Kyverno pod runs, so no policy waits for Ready.
        skip: Optional[list[pulumi.ResourceTransformation]] = [skip_policy_await] if s.kyverno.install.skip_await else None
        child = pulumi.ResourceOptions(parent=self, transformations=skip)
        self.network_policies = NetworkPolicies(
            "sr1",
            NetworkPoliciesArgs(
                config=s.network_policy, namespaces=args.namespaces,
                control_plane_cidr=s.cluster.control_plane_cidr if s.cluster is not None else None,
            ),
            opts=child,
        )
        self.kyverno = Kyverno(
            "sr2",
            KyvernoArgs(
                config=s.kyverno,
                access=args.access,
                extra_depends_on=args.depends_on,
                policy_exceptions=s.guardrails.enabled,
                platform_namespaces=list(s.network_policy.protected_namespaces),
            ),
            opts=child,
        )
        self.tenants = TenantNamespaces(
            "tenants",
            TenantNamespacesArgs(
                tenants=s.tenants,
                create_missing=s.kyverno.create_tenant_namespaces,
                pod_security=s.pod_security,
                adopting_provider=args.adopting_provider,
            ),
            opts=child,
        )
        self.guardrails: Optional[Guardrails] = None
        if s.guardrails.enabled:
            self.guardrails = Guardrails(
                "guardrails", GuardrailsArgs(settings=s, depends_on=[self.kyverno.release]), opts=child
            )
        # Tenant boundaries: NetworkPolicy writes in isolated namespaces, routes to the platform Gateways.
        from components.tenant_boundaries import TenantBoundaries, TenantBoundariesArgs

        self.tenant_boundaries = TenantBoundaries(
            "boundaries", TenantBoundariesArgs(settings=s, depends_on=[self.kyverno.release]), opts=child
        )
        # Agent isolation and the egress-locked serving profile (off by default: nothing registered).
        self.workload_isolation = None
        if s.agent_isolation.enabled or s.serving_egress.enabled:
            from components.workload_isolation import WorkloadIsolation, WorkloadIsolationArgs

            self.workload_isolation = WorkloadIsolation(
                "isolation",
                WorkloadIsolationArgs(
                    settings=s, kyverno_release=self.kyverno.release, api_server_endpoint=args.api_server_endpoint,
                    namespaces=args.namespaces,
                ),
                opts=child,
            )
        self.register_outputs({"failureAction": s.kyverno.failure_action, "tenants": s.tenants})
