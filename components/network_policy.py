"""SR1: NetworkPolicies that force all model traffic through LiteLLM.

:func:`build_policies` is the one place these objects are built; it is a pure function of
:class:`~components.config.NetworkPolicyConfig` so the offline render, the nca proof in
``tests/test_network_policy.py`` and the Pulumi component all use the same manifests.

Shape of the result (see docs/sr1-network-policies.md for the flow table and the why). Every
protected namespace (default: ``serving``, ``inference``, ``kserve``, ``llm-d``) gets the same set:

* ``default-deny-ingress``: every pod selected, no rule. NetworkPolicies are additive, so a pod
  is reachable only on what some allow rule names.
* ``allow-platform-namespaces``: the trusted platform namespaces (``allowedFrom``; plus
  ``gmp-system`` with ``managedPrometheus``) reach every pod of the namespace. Sources are
  selected only by ``namespaceSelector.matchLabels["kubernetes.io/metadata.name"]``, which the API
  server sets to the namespace's name and does not let anyone change: a tenant relabelling its
  namespace (``name: monitoring``) matches nothing. A namespace never gets this allow into itself.
* ``allow-in-namespace-clients``: the namespace's own platform clients (gateway proxies, endpoint
  pickers / llm-d scheduler, llm-d decode/prefill, benchmark Jobs), selected by pod label with a
  ``podSelector`` peer *without* ``namespaceSelector`` -- Kubernetes reads that as "pods in this
  policy's namespace", so a tenant pod copying the label elsewhere matches nothing.
* ``allow-api-server-webhooks`` (only in namespaces listed in ``webhookPorts``; default ``kserve``
  on 9443): ``kube-system`` on the webhook ports only, because on GKE the API server calls
  admission webhooks through the Konnectivity agent pods there.
* options: ``allow-intra-namespace`` (``intraNamespace``), ``allow-external-ranges``
  (``gkeL7ProxyRanges``, ``controlPlaneRanges``).

Ports: by default every rule opens every port (a new model server on an unlisted port keeps
working for trusted callers); ``ports`` is an explicit opt-in that scopes every rule into a
namespace to that namespace's listed container ports (on Dataplane V2 the policy sees the pod's
target port, never the Service port).

Tenants are never named: they are denied by default, so the policy set does not grow with them.
No rule opens a port to every source "for probes": kubelet probes come from the pod's own node,
which NetworkPolicy always allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import pulumi

from components.config import InNamespaceClient, NetworkPolicyConfig

MANAGED_PROMETHEUS = "gmp-system"
"""GKE Managed Prometheus collectors (only with ``managedPrometheus: true``)."""
KUBE_SYSTEM = "kube-system"
"""Where the Konnectivity agents run that carry the API server's webhook calls (``webhookPorts``)."""
NAME_LABEL = "kubernetes.io/metadata.name"
"""Immutable namespace-name label set by the API server (Kubernetes >= 1.21)."""

REFERENCE_PORTS: dict[str, list[int]] = {
    # vLLM (coder-*, raw-vllm) 8000; TEI embeddings 8080 (Service 80 -> 8080); the raw-vllm
    # pool's endpoint picker: ext-proc 9002, health 9003, metrics 9090.
    "serving": [8000, 8080, 9002, 9003, 9090],
    # agentgateway proxy of inference-gateway: listener 80 bound directly, metrics 15020,
    # readiness 15021; demo vllm-sim 8000; demo pool's endpoint picker 9002/9003/9090.
    "inference": [80, 8000, 9002, 9003, 9090, 15020, 15021],
    # agentgateway proxy of kserve-ingress-gateway 80/15020/15021; predictors 8080; KServe
    # controller: webhook 9443, metrics 8443.
    "kserve": [80, 8080, 8443, 9443, 15020, 15021],
    # agentgateway proxy of llm-d-gateway 80/15020/15021; decode routing sidecar 8000 + vLLM 8001,
    # prefill vLLM 8000, NIXL KV side channel 5600; scheduler 9002/9003/9090.
    "llm-d": [80, 5600, 8000, 8001, 9002, 9003, 9090, 15020, 15021],
}
"""The reference platform's container ports per protected namespace: the value to copy into
``networkPolicy.ports`` when opting into port scoping (docs/sr1-network-policies.md)."""

LABELS = {
    "app.kubernetes.io/managed-by": "llm-platform",
    "app.kubernetes.io/part-of": "llm-platform-security",
}
API_VERSION = "networking.k8s.io/v1"
KIND = "NetworkPolicy"


def ns_peer(namespace: str) -> dict[str, Any]:
    """A peer selecting a namespace by its immutable name label (never a label a tenant can set)."""
    return {"namespaceSelector": {"matchLabels": {NAME_LABEL: namespace}}}



def _pod_peer(client: InNamespaceClient) -> dict[str, Any]:
    """Pods of the policy's own namespace carrying ``client.label`` (no namespaceSelector)."""
    if client.values:
        expr = {"key": client.label, "operator": "In", "values": list(client.values)}
    else:
        expr = {"key": client.label, "operator": "Exists"}
    return {"podSelector": {"matchExpressions": [expr]}}


def ports_of(ports: Iterable[int], protocols: tuple[str, ...] = ("TCP",)) -> list[dict[str, Any]]:
    """NetworkPolicy port entries: every port, for each protocol."""
    return [{"protocol": proto, "port": p} for p in ports for proto in protocols]



def _unique(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _rule(peers: list[dict[str, Any]], ports: Optional[list[int]]) -> Optional[dict[str, Any]]:
    """One ingress rule from ``peers`` on ``ports`` (``None`` = every port).

    Returns ``None`` when it would allow nothing: an empty ``from`` or an empty ``ports`` list
    means *everything* in NetworkPolicy, so an empty list must drop the rule, never emit it.
    """
    if not peers:
        return None
    rule: dict[str, Any] = {"from": peers}
    if ports is not None:
        if not ports:
            return None
        rule["ports"] = ports_of(ports)
    return rule


def network_policy(
    namespace: str,
    name: str,
    policy_types: list[str],
    *,
    ingress: Optional[list[dict[str, Any]]] = None,
    egress: Optional[list[dict[str, Any]]] = None,
    pod_selector: Optional[dict[str, Any]] = None,
    labels: Optional[dict[str, str]] = None,
) -> dict[str, Any]:
    """One NetworkPolicy manifest (SR1's and workload isolation's): the one place its shape is built."""
    spec: dict[str, Any] = {"podSelector": pod_selector or {}, "policyTypes": policy_types}
    if ingress:
        spec["ingress"] = ingress
    if egress:
        spec["egress"] = egress
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or LABELS)},
        "spec": spec,
    }


def _policy(namespace: str, name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return network_policy(namespace, name, ["Ingress"], ingress=rules)


def _allow(namespace: str, name: str, rule: Optional[dict[str, Any]]) -> list[dict[str, Any]]:
    # An allow policy without rules would be a second default-deny: leave it out.
    return [_policy(namespace, name, [rule])] if rule is not None else []


def trusted_namespaces(cfg: NetworkPolicyConfig) -> list[str]:
    """Namespaces allowed into every protected namespace (other than itself)."""
    return _unique(list(cfg.allowed_from) + ([MANAGED_PROMETHEUS] if cfg.managed_prometheus else []))


def build_policies(cfg: NetworkPolicyConfig) -> list[dict[str, Any]]:
    """All SR1 NetworkPolicy manifests, in a deterministic order (protected namespaces as listed)."""
    out: list[dict[str, Any]] = []
    trusted = trusted_namespaces(cfg)
    ranges = _unique(list(cfg.gke_l7_proxy_ranges) + list(cfg.control_plane_ranges))
    for ns in cfg.protected_namespaces:
        ports = None if cfg.ports is None else list(cfg.ports[ns])
        out.append(_policy(ns, "default-deny-ingress", []))
        out += _allow(ns, "allow-platform-namespaces", _rule([ns_peer(s) for s in trusted if s != ns], ports))
        out += _allow(ns, "allow-in-namespace-clients", _rule([_pod_peer(c) for c in cfg.in_namespace_clients], ports))
        if ns in cfg.intra_namespace:
            # Multi-node engines (LeaderWorkerSet, Ray) talk on many dynamic ports.
            out += _allow(ns, "allow-intra-namespace", _rule([{"podSelector": {}}], ports))
        out += _allow(ns, "allow-external-ranges", _rule([{"ipBlock": {"cidr": c}} for c in ranges], ports))
        if cfg.webhook_ports.get(ns):
            # The API server reaches admission webhooks through the Konnectivity agents in
            # kube-system (GKE, AKS): only those ports, never the model servers.
            out += _allow(ns, "allow-api-server-webhooks", _rule([ns_peer(KUBE_SYSTEM)], list(cfg.webhook_ports[ns])))
    return out


def resource_name(manifest: dict[str, Any]) -> str:
    """Pulumi resource name of one manifest: ``<namespace>-<name>`` (``cluster-<name>`` when cluster-scoped)."""
    md = manifest["metadata"]
    return f"{md.get('namespace', 'cluster')}-{md['name']}"


@dataclass
class NetworkPoliciesArgs:
    """Inputs of :class:`NetworkPolicies`."""

    config: NetworkPolicyConfig
    """Typed SR1 settings (``llm-platform:networkPolicy``); the manifests come from :func:`build_policies`."""
    namespaces: dict[str, pulumi.Resource] = field(default_factory=dict)
    """The Namespace resource of each target namespace; every policy depends on its own."""


class NetworkPolicies(pulumi.ComponentResource):
    """The SR1 NetworkPolicies in every protected namespace, one child resource per manifest.

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
