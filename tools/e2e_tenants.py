"""The `declared-tenants` scenario of `make e2e`: tenant namespaces declared pre-existing
(`kyverno.createTenantNamespaces: false`, the existing-cluster path) are read before they are patched.

A server-side apply patch of a missing namespace creates it (the `apiserver-parity` row `exists (patch)`), so
:class:`components.tenants.TenantNamespaces` reads each declared namespace first and patches after the read.
Here, on the real engine: a small stack (`e2e-tenants`) of that component alone, through the same provider
helper as the program, over one namespace that exists and one that does not; and a preview of the whole
program with the same setting.
"""

from __future__ import annotations

from typing import Any, Callable

from components.platform_facts import KUEUE_MANAGED_LABEL

PREFIX = "e2e-declared-"
PRESENT = f"{PREFIX}present"
MISSING = f"{PREFIX}missing"
STACK = "e2e-tenants"
PROGRAM_STACK = "e2e-tenants-program"
LABEL = KUEUE_MANAGED_LABEL
"""A label the patch sets: present on a patched namespace, gone after the destroy."""
NOT_FOUND = "does not exist"
"""The engine's error for a read of an object the provider does not find."""


def program(kubeconfig: str, context: str, tenants: list[str]) -> Callable[[], None]:
    def run() -> None:
        import pulumi

        from components.cluster import kubernetes_provider
        from components.tenants import TenantNamespaces, TenantNamespacesArgs

        provider = kubernetes_provider("strict", cluster_identifier="e2e-tenants", kubeconfig=kubeconfig, context=context)
        TenantNamespaces("tenants", TenantNamespacesArgs(tenants=tenants, create_missing=False),
                         opts=pulumi.ResourceOptions(providers=[provider]))

    return run


def program_config(cfg: dict[str, Any], project: str) -> dict[str, Any]:
    """The e2e stack's config on the existing-cluster path with one more tenant, :data:`MISSING`."""
    out = dict(cfg)
    kyverno = dict(out.get(f"{project}:kyverno") or {})
    kyverno["createTenantNamespaces"] = False
    out[f"{project}:kyverno"] = kyverno
    out[f"{project}:tenants"] = [*(out.get(f"{project}:tenants") or []), MISSING]
    return out


def read_failures(by_urn: dict[str, list[str]], tenant: str) -> list[str]:
    """The engine's errors on the read of ``tenant``'s namespace."""
    from components.tenants import existence_check_name

    return [m for urn, messages in by_urn.items() if urn.endswith(f"::{existence_check_name(tenant)}") for m in messages]
