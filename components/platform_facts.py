"""Facts about the platform around the stack, each defined here once.

Standard library only: the CrossGuard pack (policies/crossguard, its own interpreter without the
project's dependencies) loads this file by path, so its defaults are the stack's defaults.
"""

from __future__ import annotations

DEFAULT_PROTECTED_NAMESPACES: tuple[str, ...] = ("serving", "inference", "kserve", "llm-d")
"""Namespaces that run model servers, endpoint pickers or gateway proxies in the reference platform:
the default of `networkPolicy.protectedNamespaces` (SR1), and the platform's own namespaces that SR2
keeps off its webhook path."""
