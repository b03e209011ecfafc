"""Facts about the platform around the stack, each defined here once.

Standard library only: the CrossGuard pack (policies/crossguard, its own interpreter without the
project's dependencies) loads this file by path, so its defaults are the stack's defaults.
"""

from __future__ import annotations

DEFAULT_PROTECTED_NAMESPACES: tuple[str, ...] = ("serving", "inference", "kserve", "llm-d")
"""Namespaces that run model servers, endpoint pickers or gateway proxies in the reference platform:
the default of `networkPolicy.protectedNamespaces` (SR1), and the platform's own namespaces that SR2
keeps off its webhook path."""

KUEUE_MANAGED_LABEL = "llm-platform/kueue-managed"
"""The namespace label (value "true") that says Kueue governs the namespace: SR2's scope, set on tenant
namespaces by the stack, and the label the reference platform scopes Kueue's own webhooks by."""

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
"""Kueue's label naming a workload's LocalQueue (where Kueue reads it: the object, or a Pod template)."""
