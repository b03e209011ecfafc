"""Tenant namespaces: their Pod Security level (`podSecurity`) and the boundaries tenants may not cross
(`tenantBoundaries`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from components.config.base import (
    DNS_SUBDOMAIN,
    ConfigModel,
    NamespaceName,
    namespace_list,
    no_duplicates,
    service_account_user,
)
from components.platform_facts import PLATFORM_GATEWAYS, PLATFORM_ROUTE_NAMESPACES

# Pod Security Standards version pinned on tenant namespaces (`enforce-version`, `warn-version`,
# `audit-version`). It is the Kubernetes minor the project validates against (kubernetes-validate
# 1.33 schemas) and the newest version `tools/pod_security.py` implements check by check; bump both
# together when the clusters move to a newer minor.
POD_SECURITY_VERSION = "v1.33"


class PodSecurityConfig(ConfigModel):
    """Pod Security Admission on tenant namespaces (active with `security: true`)."""

    enforce: Literal["baseline", "restricted"] = "baseline"
    """Level the API server enforces on tenant Pods; warn and audit are always `restricted`."""


class GatewayRef(ConfigModel):
    """A Gateway of the platform, by namespace and name."""

    namespace: NamespaceName
    """Namespace of the Gateway."""
    name: str
    """Name of the Gateway (`metadata.name`)."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not DNS_SUBDOMAIN.fullmatch(v):
            raise ValueError(f"{v!r} is not a Gateway name (lowercase DNS subdomain, e.g. inference-gateway)")
        return v


# Identities that may always write NetworkPolicies in agent and egress-locked namespaces: Kyverno's
# background controller (the egress-lockdown generate rule), the namespace controller and garbage
# collector (deleting a namespace or an owner), and the API server's superuser group.
BUILTIN_NETWORK_POLICY_WRITERS = (
    "system:serviceaccount:kyverno:kyverno-background-controller",
    "system:serviceaccount:kube-system:namespace-controller",
    "system:serviceaccount:kube-system:generic-garbage-collector",
)
BUILTIN_NETWORK_POLICY_WRITER_GROUPS = ("system:masters",)


class TenantBoundariesConfig(ConfigModel):
    """Admission rules that keep tenants from undoing the platform's isolation (active with `security: true`):
    NetworkPolicy writes in agent and egress-locked namespaces, and routes to the platform's shared Gateways."""

    network_policy_writers: list[str] = Field(default_factory=list)
    """Request user names that may create, change or delete NetworkPolicies in the agent and egress-locked
    namespaces, besides Kyverno's background controller, the namespace controller, the garbage collector and
    the group `system:masters`: the stack's deployer and its preview identity (on GKE a Google service
    account's user name is its e-mail, e.g. `pulumi-dev-deployer@llm-platform-dev.iam.gserviceaccount.com`)."""
    platform_gateways: list[GatewayRef] = Field(
        default_factory=lambda: [GatewayRef(namespace=ns, name=n) for ns, n in PLATFORM_GATEWAYS])
    """Shared Gateways only the platform's routes may attach to: `inference-gateway` and
    `kserve-ingress-gateway` by default."""
    route_namespaces: list[str] = Field(default_factory=lambda: list(PLATFORM_ROUTE_NAMESPACES))
    """Namespaces, besides `networkPolicy.protectedNamespaces`, whose routes may attach to the platform
    Gateways (default: `agentgateway-system`, home of the external-model route)."""
    failure_action: Literal["Enforce", "Audit"] = "Enforce"
    """Enforce (default) or Audit, independently of `kyverno.failureAction`: these rules never judge the
    platform's own writes (its identities and namespaces are left out), so a stack that audits its other
    policies still refuses a tenant's extra NetworkPolicy or route to a platform Gateway."""

    @field_validator("network_policy_writers")
    @classmethod
    def _writers(cls, v: list[str]) -> list[str]:
        for u in v:
            if not u or u != u.strip() or u.startswith("system:anonymous") or u == "system:unauthenticated":
                raise ValueError(f"{u!r} is not a user name to trust; list the deployer's user name, e.g. "
                                 "pulumi-dev-deployer@llm-platform-dev.iam.gserviceaccount.com")
            if u.startswith("system:serviceaccount:"):
                service_account_user(u)
        return no_duplicates(v, "NetworkPolicy writer")

    @field_validator("platform_gateways")
    @classmethod
    def _gateways(cls, v: list[GatewayRef]) -> list[GatewayRef]:
        if not v:
            raise ValueError("list the platform's shared Gateways (default: inference/inference-gateway, "
                             "kserve/kserve-ingress-gateway); an empty list leaves them open to tenant routes")
        return no_duplicates(v, "platform Gateway")

    @field_validator("route_namespaces")
    @classmethod
    def _route_ns(cls, v: list[str]) -> list[str]:
        return namespace_list(v, item="route namespace")
