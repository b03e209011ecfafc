"""Tenant onboarding: label tenant namespaces for the Kueue policy (SR2) and Pod Security Admission."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, cast

import pulumi
import pulumi_kubernetes as k8s

from components.config import POD_SECURITY_VERSION, PodSecurityConfig
from components.platform_facts import KUEUE_MANAGED_LABEL

POD_SECURITY_PREFIX = "pod-security.kubernetes.io/"


def pod_security_labels(config: PodSecurityConfig, version: str = POD_SECURITY_VERSION) -> dict[str, str]:
    """Pod Security Admission labels: enforce at the configured level, warn and audit at `restricted`,
    every mode pinned to ``version`` so a cluster upgrade never changes what is admitted."""
    return {
        f"{POD_SECURITY_PREFIX}enforce": config.enforce,
        f"{POD_SECURITY_PREFIX}enforce-version": version,
        f"{POD_SECURITY_PREFIX}warn": "restricted",
        f"{POD_SECURITY_PREFIX}warn-version": version,
        f"{POD_SECURITY_PREFIX}audit": "restricted",
        f"{POD_SECURITY_PREFIX}audit-version": version,
    }


def tenant_metadata(name: str, pod_security: Optional[PodSecurityConfig] = None) -> dict:
    """The metadata this stack owns on a tenant namespace: the Kueue-managed label and the Pod
    Security labels, nothing else."""
    labels = {KUEUE_MANAGED_LABEL: "true"}
    labels.update(pod_security_labels(pod_security or PodSecurityConfig()))
    return {"name": name, "labels": labels}


def existence_check_name(tenant: str) -> str:
    """The Pulumi name of the read of a declared pre-existing tenant namespace: what the engine's error for a
    missing one names (``resource '<tenant>' does not exist``)."""
    return f"tenant-{tenant}-must-exist"


@dataclass
class TenantNamespacesArgs:
    """Inputs of :class:`TenantNamespaces`."""

    tenants: list[str]
    """Tenant namespace names (validated DNS-1123 labels)."""
    create_missing: bool = False
    """Create the namespaces instead of patching existing ones."""
    pod_security: PodSecurityConfig = field(default_factory=PodSecurityConfig)
    """Pod Security Admission levels put on every tenant namespace."""
    adopting_provider: Optional[pulumi.ProviderResource] = None
    """Provider with ``upsertExistingObjects`` used with ``create_missing``: a tenant namespace that
    already exists is adopted instead of failing the create with AlreadyExists."""


class TenantNamespaces(pulumi.ComponentResource):
    """Labels tenant namespaces `llm-platform/kueue-managed=true` and with Pod Security Admission levels.

    Existing namespaces are patched server-side (only our labels are owned; removing the stack
    removes the labels, never the namespace), each after a read of it that fails when it is
    missing. With ``create_missing`` the namespaces are created or adopted when they exist (the
    adopting provider), and retained on delete, so turning security off never deletes a tenant's
    workloads.
    """

    def __init__(self, name: str, args: TenantNamespacesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:security:TenantNamespaces", name, None, opts)
        self.namespaces: list[pulumi.CustomResource] = []
        for tenant in args.tenants:
            if args.create_missing:
                ns: pulumi.CustomResource = k8s.core.v1.Namespace(
                    f"tenant-{tenant}",
                    metadata=cast("k8s.meta.v1.ObjectMetaArgsDict", tenant_metadata(tenant, args.pod_security)),
                    opts=pulumi.ResourceOptions(
                        parent=self, retain_on_delete=True, provider=args.adopting_provider
                    ),
                )
            else:
                # The server-side apply patch of a missing namespace would create it, owned by nobody: read it
                # first, so a missing one fails the preview and the `up` before any patch (docs/deploy.md).
                existing = k8s.core.v1.Namespace.get(
                    existence_check_name(tenant), tenant, opts=pulumi.ResourceOptions(parent=self)
                )
                ns = k8s.core.v1.NamespacePatch(
                    f"tenant-{tenant}",
                    metadata=cast("k8s.meta.v1.ObjectMetaPatchArgsDict", tenant_metadata(tenant, args.pod_security)),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[existing]),
                )
            self.namespaces.append(ns)
        self.register_outputs({"tenants": list(args.tenants)})
