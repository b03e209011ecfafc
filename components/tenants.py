"""SR2 tenant onboarding: label tenant namespaces so the Kueue policy applies to them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

KUEUE_MANAGED_LABEL = "llm-platform/kueue-managed"


def tenant_metadata(name: str) -> dict:
    """The metadata this stack owns on a tenant namespace: the Kueue-managed label, nothing else."""
    return {"name": name, "labels": {KUEUE_MANAGED_LABEL: "true"}}


@dataclass
class TenantNamespacesArgs:
    """Inputs of :class:`TenantNamespaces`."""

    tenants: list[str]
    """Tenant namespace names (validated DNS-1123 labels)."""
    create_missing: bool = False
    """Create the namespaces instead of patching existing ones."""
    adopting_provider: Optional[pulumi.ProviderResource] = None
    """Provider with ``upsertExistingObjects`` used with ``create_missing``: a tenant namespace that
    already exists is adopted instead of failing the create with AlreadyExists."""


class TenantNamespaces(pulumi.ComponentResource):
    """Labels tenant namespaces `llm-platform/kueue-managed=true`.

    Existing namespaces are patched server-side (only our label is owned; removing the stack
    removes the label, never the namespace). With ``create_missing`` the namespaces are created
    or adopted when they exist (the adopting provider), and retained on delete, so turning
    security off never deletes a tenant's workloads.
    """

    def __init__(self, name: str, args: TenantNamespacesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:security:TenantNamespaces", name, None, opts)
        self.namespaces: list[pulumi.CustomResource] = []
        for tenant in args.tenants:
            if args.create_missing:
                ns: pulumi.CustomResource = k8s.core.v1.Namespace(
                    f"tenant-{tenant}",
                    metadata=tenant_metadata(tenant),
                    opts=pulumi.ResourceOptions(
                        parent=self, retain_on_delete=True, provider=args.adopting_provider
                    ),
                )
            else:
                ns = k8s.core.v1.NamespacePatch(
                    f"tenant-{tenant}",
                    metadata=tenant_metadata(tenant),
                    opts=pulumi.ResourceOptions(parent=self),
                )
            self.namespaces.append(ns)
        self.register_outputs({"tenants": list(args.tenants)})
