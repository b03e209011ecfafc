"""The guardrail rules as pure functions over resource types and properties.

`__main__.py` wires them into a CrossGuard PolicyPack; tests call them directly (constructing a
PolicyPack blocks waiting for the Pulumi engine). Each function returns violation messages that name
the resource and the fix; an empty list means compliant.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
from typing import Any, Iterable, Mapping, NamedTuple, Optional, Sequence

CLUSTER = "gcp:container/cluster:Cluster"
HELM_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart")
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
SECURITY_PREFIX = "llm-platform:security:"

def _platform_facts():
    """components/platform_facts.py, by path: the pack runs in its own interpreter without the project's
    dependencies, and that module is standard-library only. One definition of the defaults."""
    path = pathlib.Path(__file__).resolve().parents[2] / "components" / "platform_facts.py"
    spec = importlib.util.spec_from_file_location("llm_platform_facts", path)
    assert spec and spec.loader, f"{path} not found: the pack is run from the llm-platform repository"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DEFAULT_PROTECTED_NAMESPACES: tuple[str, ...] = _platform_facts().DEFAULT_PROTECTED_NAMESPACES
# Exact SemVer 2.0.0: no ranges, wildcards, "latest" or leading "v".
EXACT_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


class Resource(NamedTuple):
    """What a stack validation sees of one resource."""

    type: str
    name: str
    props: Mapping[str, Any]
    urn: str = ""


def _type_chain(r: Resource) -> list[str]:
    """The resource's type and its parents' types, from the URN (`...::<parent$...$type>::<name>`)."""
    parts = r.urn.split("::")
    return (parts[2].split("$") if len(parts) >= 4 else []) + [r.type]


def security_enabled(resources: Iterable[Resource]) -> bool:
    """The security capability group is in the stack: a `llm-platform:security:*` component or a child of one."""
    return any(t.startswith(SECURITY_PREFIX) for r in resources for t in _type_chain(r))


def legacy_network_policy_addon(name: str, props: Mapping[str, Any]) -> list[str]:
    """A GKE cluster must not enable the legacy (Calico) network-policy addon: GKE rejects it with Dataplane V2."""
    addon = ((props.get("addonsConfig") or {}).get("networkPolicyConfig") or {})
    legacy = (props.get("networkPolicy") or {})
    if addon.get("disabled") is False or legacy.get("enabled") is True:
        return [
            f"cluster {name}: the legacy network-policy addon is enabled (addonsConfig.networkPolicyConfig / "
            "networkPolicy); remove it: Dataplane V2 (datapathProvider ADVANCED_DATAPATH) enforces NetworkPolicy itself"
        ]
    return []


def unpinned_kyverno(resource_type: str, name: str, props: Mapping[str, Any]) -> list[str]:
    """A Kyverno Helm release or chart must be pinned to an exact chart version."""
    if resource_type not in HELM_TYPES or "kyverno" not in str(props.get("chart", "")):
        return []
    version = str(props.get("version") or "")
    if not EXACT_SEMVER.match(version):
        return [
            f"{resource_type.split(':')[-1]} {name}: Kyverno chart version {version or '(unset)'!r} is not an exact "
            "version; pin it (e.g. version=\"3.8.1\") so every cluster runs the reviewed chart and CRDs"
        ]
    return []


def security_without_dataplane_v2(resources: Iterable[Resource]) -> list[str]:
    """With the security group in the stack, every GKE cluster must run Dataplane V2."""
    resources = list(resources)
    if not security_enabled(resources):
        return []
    return [
        f"cluster {r.name}: security is on but datapathProvider is {r.props.get('datapathProvider') or '(unset)'!r}; "
        "the NetworkPolicies would be authored but not enforced. Create the cluster with ADVANCED_DATAPATH"
        for r in resources
        if r.type == CLUSTER and r.props.get("datapathProvider") != "ADVANCED_DATAPATH"
    ]


def _is_default_deny(props: Mapping[str, Any]) -> bool:
    spec = props.get("spec") or {}
    selects_all = not (spec.get("podSelector") or {}).get("matchLabels") and not (spec.get("podSelector") or {}).get(
        "matchExpressions"
    )
    return selects_all and "Ingress" in (spec.get("policyTypes") or []) and not spec.get("ingress")


def protected_namespaces(network_policy: Optional[Mapping[str, Any]]) -> tuple[str, ...]:
    """The stack's `llm-platform:networkPolicy.protectedNamespaces` (the engine passes the stack's config to the
    pack), else the stack's default."""
    names = (network_policy or {}).get("protectedNamespaces")
    return tuple(names) if names is not None else DEFAULT_PROTECTED_NAMESPACES


def missing_default_deny(resources: Iterable[Resource],
                         protected: Sequence[str] = DEFAULT_PROTECTED_NAMESPACES) -> list[str]:
    """A NetworkPolicy set in a protected namespace must include a default-deny-ingress policy.

    Every protected namespace of a stack with the security group must have one: a namespace whose SR1
    policies are all missing is as open as one that lost only its default-deny."""
    resources = list(resources)
    by_ns: dict[str, list[Resource]] = {}
    for r in resources:
        if r.type == NETWORK_POLICY:
            ns = (r.props.get("metadata") or {}).get("namespace", "default")
            by_ns.setdefault(ns, []).append(r)
    required = set(protected) if security_enabled(resources) else set(protected) & set(by_ns)
    return [
        f"namespace {ns}: {len(by_ns.get(ns, []))} NetworkPolicies but no default-deny-ingress (podSelector {{}}, "
        "policyTypes [Ingress], no ingress rules); without it any pod no allow-list selects is open to all"
        for ns in sorted(required)
        if not any(_is_default_deny(p.props) for p in by_ns.get(ns, []))
    ]
