"""The namespaces the stack writes into: created when missing, adopted when present, never deleted.

The same stack creates the cluster, so nobody can create ``serving`` / ``inference`` before the
first ``pulumi up``: the stack owns every namespace it writes objects into. Each is a
``Namespace`` registered through the *adopting* Kubernetes provider (``upsertExistingObjects``; in
the pinned pulumi-kubernetes 4.34.2 a create of an existing object otherwise fails with AlreadyExists,
pulumi/pulumi-kubernetes#4278),
with ``retainOnDelete``: on a new cluster it is created, on a cluster where the platform's
installers already made it, it is adopted (server-side apply of our one label, other fields
untouched), and removing the stack never deletes it or the workloads in it. Every namespaced
object the stack creates ``depends_on`` its namespace.

Per-object decision, adopt vs. refuse (docs/deploy.md, "Existing objects: adopt or refuse"):

* ``written_namespaces`` (SR1's namespaces), and tenant namespaces with
  ``kyverno.createTenantNamespaces: true``: adopt.
* tenant namespaces with ``createTenantNamespaces: false``: declared pre-existing; only the
  Kueue and Pod Security labels are patched, after a read that fails when one is missing.
* the ``kyverno`` namespace and Kyverno's CRDs: owned, refuse. A cluster that already runs
  another Kyverno is refused by the preflight in :mod:`components.kyverno` with a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, cast

import pulumi
import pulumi_kubernetes as k8s

from components.config import StackConfig

OWNER_LABEL = "llm-platform/namespace-owner"
"""The one label the stack sets on a namespace it creates or adopts (a key nobody else writes)."""

ALWAYS_PRESENT = ("default", "kube-system", "kube-public", "kube-node-lease")
"""Namespaces every Kubernetes cluster has from the start."""


def written_namespaces(settings: StackConfig) -> list[str]:
    """The namespaces the stack writes objects into and therefore creates or adopts.

    The namespaces of the SR1 NetworkPolicies (``networkPolicy.protectedNamespaces``: by default
    ``serving``, ``inference``, ``kserve``, ``llm-d``), computed from the policies themselves, when
    ``security`` is on, plus the agent namespaces of ``agentIsolation``. The one place to extend.
    """
    if not settings.security:
        return []
    from components.network_policy import build_policies

    names = {p["metadata"]["namespace"] for p in build_policies(settings.network_policy)}
    names |= set(settings.agent_isolation.written_namespace_names)  # agent namespaces get their own policies
    return sorted(names)


def declared_existing_namespaces(settings: StackConfig) -> list[str]:
    """Namespaces the stack's config declares to exist before the first ``pulumi up``.

    Tenant namespaces are only patched (not created) unless ``createTenantNamespaces`` is on.
    """
    tenants = [] if settings.kyverno.create_tenant_namespaces or not settings.security else list(settings.tenants)
    return sorted({*ALWAYS_PRESENT, *tenants})


def namespace_labels(settings: StackConfig) -> dict[str, dict[str, str]]:
    """Labels beyond the owner label, by namespace: Pod Security on every agent namespace (level
    ``agentIsolation.podSecurity.enforce``, warn and audit ``restricted``, pinned like the tenants')."""
    if not settings.security:
        return {}
    from components.tenants import pod_security_labels

    labels = pod_security_labels(settings.agent_isolation.pod_security)
    return {ns: dict(labels) for ns in settings.agent_isolation.written_namespace_names}


def namespace_metadata(name: str, labels: Optional[dict[str, str]] = None) -> dict:
    """Metadata of a namespace the stack creates or adopts: its name, our owner label and ``labels``."""
    return {"name": name, "labels": {OWNER_LABEL: "llm-platform", **(labels or {})}}


@dataclass
class PlatformNamespacesArgs:
    """Inputs of :class:`PlatformNamespaces`."""

    names: list[str]
    """Namespaces to create or adopt (from :func:`written_namespaces`)."""
    adopting_provider: pulumi.ProviderResource
    """The Kubernetes provider with ``upsertExistingObjects: true`` (create or adopt)."""
    depends_on: list[pulumi.Resource]
    """Cluster resources that must exist first."""
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    """Further labels by namespace (from :func:`namespace_labels`)."""


class PlatformNamespaces(pulumi.ComponentResource):
    """Creates or adopts the namespaces the stack writes into; retained on delete."""

    by_name: dict[str, k8s.core.v1.Namespace]

    def __init__(self, name: str, args: PlatformNamespacesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:platform:Namespaces", name, None, opts)
        self.by_name = {
            ns: k8s.core.v1.Namespace(
                f"ns-{ns}",
                metadata=cast("k8s.meta.v1.ObjectMetaArgsDict", namespace_metadata(ns, args.labels.get(ns))),
                opts=pulumi.ResourceOptions(
                    parent=self,
                    provider=args.adopting_provider,
                    retain_on_delete=True,
                    depends_on=args.depends_on,
                ),
            )
            for ns in args.names
        }
        self.register_outputs({"namespaces": list(args.names)})
