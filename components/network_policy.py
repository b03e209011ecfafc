"""SR1: NetworkPolicies that force all model traffic through LiteLLM.

:func:`build_policies` is the one place these objects are built; it is a pure function of
:class:`~components.config.NetworkPolicyConfig` so the offline render, the nca proof in
``tests/test_network_policy.py`` and the Pulumi component all use the same manifests.

Shape of the result (see docs/sr1-network-policies.md for the table and the why):

* ``serving`` and ``inference`` each get ``default-deny-ingress`` (every pod selected, no rule)
  and allow-list policies on top. NetworkPolicies are additive, so a pod is reachable only on
  what some allow rule names.
* Sources are selected only by ``namespaceSelector.matchLabels["kubernetes.io/metadata.name"]``.
  The API server sets that label to the namespace's name and does not let anyone change it, so
  a tenant relabelling its namespace (``name: monitoring``) or copying a trusted pod's labels
  matches nothing. No rule has a ``podSelector`` peer and no rule lacks ``from``.
* The monitoring namespace is limited to the metrics ports even when it is also listed in the
  general allow list; it reaches the model port only because vLLM serves ``/metrics`` on it.
* Tenants are never named: they are denied by default, so the policy set does not grow with them.
* No rule opens a port to every source "for probes": kubelet probes come from the pod's own
  node, which NetworkPolicy always allows (Kubernetes NetworkPolicy docs; Dataplane V2 is
  Cilium, which allows local-host traffic to local endpoints by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import pulumi

from components.config import NetworkPolicyConfig

SERVING = "serving"
"""Namespace of the model servers (vLLM)."""
INFERENCE = "inference"
"""Namespace of the inference gateway proxy and the endpoint picker (GIE)."""
AGENTGATEWAY = "agentgateway-system"
"""A gateway proxy outside `inference`; it calls the endpoint picker via ext-proc."""
MANAGED_PROMETHEUS = "gmp-system"
"""GKE Managed Prometheus collectors (only with ``managedPrometheus: true``)."""
NAME_LABEL = "kubernetes.io/metadata.name"
"""Immutable namespace-name label set by the API server (Kubernetes >= 1.21)."""

LABELS = {
    "app.kubernetes.io/managed-by": "llm-platform",
    "app.kubernetes.io/part-of": "llm-platform-security",
}
API_VERSION = "networking.k8s.io/v1"
KIND = "NetworkPolicy"


def _ns_peer(namespace: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAME_LABEL: namespace}}}


def _ports(ports: Iterable[int]) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def _unique(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _rule(namespaces: list[str], ports: Optional[list[int]]) -> Optional[dict[str, Any]]:
    """One ingress rule from ``namespaces`` on ``ports`` (``None`` = every port).

    Returns ``None`` when it would allow nothing: an empty ``from`` or an empty ``ports`` list
    means *everything* in NetworkPolicy, so an empty config list must drop the rule, never
    emit it.
    """
    if not namespaces:
        return None
    rule: dict[str, Any] = {"from": [_ns_peer(ns) for ns in namespaces]}
    if ports is not None:
        if not ports:
            return None
        rule["ports"] = _ports(ports)
    return rule


def _policy(namespace: str, name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": {}, "policyTypes": ["Ingress"]}
    if rules:
        spec["ingress"] = rules
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": dict(LABELS)},
        "spec": spec,
    }


def _allow(namespace: str, name: str, rules: list[Optional[dict[str, Any]]]) -> list[dict[str, Any]]:
    kept = [r for r in rules if r is not None]
    # An allow policy without rules would be a second default-deny: leave it out.
    return [_policy(namespace, name, kept)] if kept else []


def _split(allowed_from: list[str], cfg: NetworkPolicyConfig) -> tuple[list[str], list[str]]:
    """(general sources, metrics-only sources) for one destination namespace."""
    general = [ns for ns in allowed_from if ns != cfg.monitoring_namespace]
    metrics = [ns for ns in allowed_from if ns == cfg.monitoring_namespace]
    if cfg.managed_prometheus:
        metrics.append(MANAGED_PROMETHEUS)
    return general, _unique(metrics)


def build_policies(cfg: NetworkPolicyConfig) -> list[dict[str, Any]]:
    """All SR1 NetworkPolicy manifests, in a deterministic order (serving, then inference)."""
    p = cfg.ports
    out: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- serving
    general, metrics = _split(cfg.serving_allowed_from, cfg)
    out.append(_policy(SERVING, "default-deny-ingress", []))
    out += _allow(SERVING, "allow-model-server", [_rule(general, p.model_server)])
    out += _allow(SERVING, "allow-metrics", [_rule(metrics, p.serving_metrics)])
    if cfg.intra_serving:
        # Multi-node engines (LeaderWorkerSet, Ray) talk on many dynamic ports.
        out += _allow(SERVING, "allow-intra-serving", [_rule([SERVING], None)])

    # ---------------------------------------------------------------- inference
    general, metrics = _split(cfg.inference_allowed_from, cfg)
    out.append(_policy(INFERENCE, "default-deny-ingress", []))
    # Listed clients (LiteLLM, agentgateway) and the gateway's own namespace reach the
    # gateway listener ports.
    out += _allow(INFERENCE, "allow-gateway", [_rule(_unique(general + [INFERENCE]), p.gateway)])
    # The gateway proxy in `inference` calls the picker via ext-proc; so does agentgateway's
    # proxy when it is the gateway. LiteLLM is not allowed here: it only talks HTTP to the gateway.
    picker_from = [INFERENCE] + [ns for ns in general if ns == AGENTGATEWAY]
    out += _allow(INFERENCE, "allow-endpoint-picker", [_rule(picker_from, p.endpoint_picker)])
    out += _allow(INFERENCE, "allow-metrics", [_rule(metrics, p.inference_metrics)])
    if cfg.gke_l7_proxy_ranges and p.gateway:
        out.append(
            _policy(
                INFERENCE,
                "allow-gke-l7-proxies",
                [
                    {
                        "from": [{"ipBlock": {"cidr": c}} for c in cfg.gke_l7_proxy_ranges],
                        "ports": _ports(p.gateway),
                    }
                ],
            )
        )
    return out


def resource_name(manifest: dict[str, Any]) -> str:
    """Pulumi resource name of one manifest: ``<namespace>-<name>``."""
    md = manifest["metadata"]
    return f"{md['namespace']}-{md['name']}"


@dataclass
class NetworkPoliciesArgs:
    """Inputs of :class:`NetworkPolicies`."""

    config: NetworkPolicyConfig
    """Typed SR1 settings (``llm-platform:networkPolicy``); the manifests come from :func:`build_policies`."""
    namespaces: dict[str, pulumi.Resource] = field(default_factory=dict)
    """The Namespace resource of each target namespace; every policy depends on its own."""


class NetworkPolicies(pulumi.ComponentResource):
    """The SR1 NetworkPolicies in `serving` and `inference`, one child resource per manifest.

    The Kubernetes provider is inherited from this component's parent/``providers`` option.
    """

    policies: list[Any]

    def __init__(
        self,
        name: str,
        args: NetworkPoliciesArgs,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        super().__init__("llm-platform:security:NetworkPolicies", name, None, opts)
        from pulumi_kubernetes.networking.v1 import NetworkPolicy

        self.policies = []
        names: list[str] = []
        for manifest in build_policies(args.config):
            rname = resource_name(manifest)
            self.policies.append(
                NetworkPolicy(
                    rname,
                    metadata=manifest["metadata"],
                    spec=manifest["spec"],
                    opts=pulumi.ResourceOptions(
                        parent=self,
                        depends_on=[args.namespaces[ns]] if (ns := manifest["metadata"]["namespace"]) in args.namespaces else [],
                    ),
                )
            )
            names.append(rname)
        self.register_outputs({"policies": names})
