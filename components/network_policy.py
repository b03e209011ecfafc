"""SR1: NetworkPolicies that force all model traffic through LiteLLM.

:func:`build_policies` is the one place these objects are built; it is a pure function of
:class:`~components.config.NetworkPolicyConfig` so the offline render, the nca proof in
``tests/test_network_policy.py`` and the Pulumi component all use the same manifests.

Shape of the result (see docs/sr1-network-policies.md for the flow table and the why). Every
protected namespace (default: ``serving``, ``inference``, ``kserve``, ``llm-d``) gets the same set:

* ``default-deny-ingress``: every pod selected, no rule. NetworkPolicies are additive, so a pod
  is reachable only on what some allow rule names.
* ``allow-platform-namespaces``: the trusted pods (``allowedFromPods``, defaults in
  ``platform_facts.TRUSTED_PLATFORM_PODS``: LiteLLM's proxy, the gateway proxies, Prometheus, with
  ``managedPrometheus`` the GMP collectors) of the trusted namespaces (``allowedFrom``) reach every pod
  of the namespace; the rest of those namespaces (Grafana, the OTLP collector, ``litellm-pg``, the
  agentgateway controller), which tenants may reach, does not. Each peer is a namespace, selected only by
  ``namespaceSelector.matchLabels["kubernetes.io/metadata.name"]`` (set by the API server to the
  namespace's name, unchangeable: a tenant relabelling its namespace ``name: monitoring`` matches
  nothing), AND ``podSelector.matchLabels`` in the same peer, so a tenant pod copying Prometheus' labels
  in its own namespace matches nothing either. A namespace never gets this allow into itself.
* ``allow-in-namespace-clients``: the namespace's own platform clients (gateway proxies, endpoint
  pickers / llm-d scheduler, llm-d decode/prefill, benchmark Jobs), selected by pod label with a
  ``podSelector`` peer *without* ``namespaceSelector`` -- Kubernetes reads that as "pods in this
  policy's namespace", so a tenant pod copying the label elsewhere matches nothing.
* ``allow-api-server-webhooks`` (only in namespaces listed in ``webhookPorts``; default ``kserve``
  on 9443): ``kube-system`` on the webhook ports only, because on GKE the API server calls
  admission webhooks through the Konnectivity agent pods there.
  The private control plane's range (``controlPlaneRanges`` + the cluster's ``controlPlaneCidr``) gets
  the same ports: VPC-peering private clusters call webhooks from there, not through Konnectivity.
* ``allow-gateway-proxy-egress``: Gateway proxies reach only the protected namespaces, DNS, their
  controller (xDS) and the OTLP collector; ``allow-gateway-internet-egress`` adds public 443 for the
  Gateways in ``gatewayInternetEgress`` (external providers).
* ``allow-benchmarks-to-gateways``: the benchmark Jobs (``benchmarkNamespace``) reach the Gateway
  proxies of the other protected namespaces on the listener port.
* options: ``allow-intra-namespace`` (``intraNamespace``), ``allow-external-ranges``
  (``gkeL7ProxyRanges``).

Around SR1 (``platformServices``): ``litellm`` (every source reaches the proxy port only; its
CloudNativePG database only LiteLLM, its instances, the operator and monitoring) and ``monitoring``
(OTLP and Grafana for every source, Prometheus for its query clients, the rest in-namespace).

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

from components.config import BENCHMARK_CLIENT, ClusterDns, InNamespaceClient, NetworkPolicyConfig
from components.platform_facts import (
    AGENTGATEWAY_NAMESPACE,
    GATEWAY_NAME_LABEL,
    KUBE_DNS_LABELS,
    KUBE_DNS_NAMESPACE,
    LITELLM_NAMESPACE,
    LITELLM_PORT,
    LITELLM_PROXY_LABELS,
    METADATA_SERVER_ADDRESS,
    MONITORING_NAMESPACE,
    NODE_LOCAL_DNS_ADDRESS,
    OTLP_PORTS,
    PROMETHEUS_LABELS,
)
from components.platform_facts import GATEWAY_CLASS_LABELS as GATEWAY_CLASS_LABELS  # re-exported (workload isolation)

KUBE_SYSTEM = "kube-system"
"""Where the Konnectivity agents run that carry the API server's webhook calls (``webhookPorts``)."""
NAME_LABEL = "kubernetes.io/metadata.name"
"""Immutable namespace-name label set by the API server (Kubernetes >= 1.21)."""

NODE_LOCAL_DNS = f"{NODE_LOCAL_DNS_ADDRESS}/32"
METADATA_SERVER = f"{METADATA_SERVER_ADDRESS}/32"
"""Cloud DNS answers on the metadata server address, port 53; the metadata API is port 80."""
PRIVATE_RANGES = [
    "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16",
]
"""Excluded from public-443 egress: RFC 1918, CGNAT, loopback, link-local (metadata server)."""

# Gateway proxies (agentgateway chart, docs/sr1-network-policies.md "Where the facts come from"); their
# labels are in components/platform_facts.py.
GATEWAY_LISTENER_PORTS = [80]
"""Listener port of the reference's Gateways (inference-gateway, kserve-ingress-gateway, llm-d-gateway)."""
AGENTGATEWAY_XDS_PORT = 9978
"""The agentgateway controller's xDS port (settings `AgentgatewayXdsServicePort`, default 9978)."""

# LiteLLM and its database (chart litellm-helm, CloudNativePG).
LITELLM_MIGRATION_LABELS = {"batch.kubernetes.io/job-name": "litellm-migrations"}
"""The chart's schema-migration Job (`<fullname>-migrations`); its pod template has no chart labels."""
CNPG_CLUSTER_LABEL = "cnpg.io/cluster"
CNPG_OPERATOR_LABELS = {"app.kubernetes.io/name": "cloudnative-pg"}
POSTGRES_PORT = 5432
CNPG_STATUS_PORT = 8000
"""The instance manager's status port: the operator must reach it and 5432 (CloudNativePG networking docs)."""
CNPG_METRICS_PORT = 9187

# Monitoring (kube-prometheus-stack, grafana, opentelemetry-collector charts).
GRAFANA_LABELS = {"app.kubernetes.io/name": "grafana"}
GRAFANA_PORT = 3000
OTEL_COLLECTOR_LABELS = {"app.kubernetes.io/name": "opentelemetry-collector"}
PROMETHEUS_PORT = 9090

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


def client_selector(c: InNamespaceClient) -> dict[str, Any]:
    """Label selector of an :class:`InNamespaceClient` (key exists, or value in ``values``)."""
    return _pod_peer(c)["podSelector"]


def labels_peer(labels: dict[str, str], namespace: Optional[str] = None) -> dict[str, Any]:
    """Pods with ``labels``: in ``namespace`` (by its name label) or, without one, in the policy's own."""
    peer: dict[str, Any] = {"podSelector": {"matchLabels": dict(labels)}}
    if namespace is not None:
        peer.update(ns_peer(namespace))
    return peer


def dns_rules(dns: ClusterDns) -> list[dict[str, Any]]:
    """Egress rules for name resolution: kube-dns always, NodeLocal DNSCache / Cloud DNS when configured."""
    dns_ports = ports_of([53], ("UDP", "TCP"))
    rules = [{"to": [{**ns_peer(KUBE_DNS_NAMESPACE), "podSelector": {"matchLabels": dict(KUBE_DNS_LABELS)}}],
              "ports": dns_ports}]
    if dns.node_local_dns_cache:
        rules.append({"to": [{"ipBlock": {"cidr": NODE_LOCAL_DNS}}], "ports": dns_ports})
    if dns.cloud_dns:
        rules.append({"to": [{"ipBlock": {"cidr": METADATA_SERVER}}], "ports": dns_ports})
    return rules


def public_443() -> dict[str, Any]:
    """Egress rule: public addresses (every private, CGNAT and link-local range excluded) on 443."""
    return {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(PRIVATE_RANGES)}}], "ports": ports_of([443])}



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
    """Namespaces whose trusted pods are allowed into every protected namespace (other than itself)."""
    return cfg.trusted_namespace_names


def trusted_peers(cfg: NetworkPolicyConfig, namespace: str) -> list[dict[str, Any]]:
    """The trusted platform pods as ingress peers of ``namespace``: each is a namespace (by its immutable
    name label) AND pod labels in one peer, so the labels count only inside that namespace."""
    pods = cfg.trusted_pods
    return [
        {**ns_peer(source), "podSelector": {"matchLabels": labels}}
        for source in trusted_namespaces(cfg) if source != namespace
        for labels in pods[source]
    ]


# Every DNS path a GKE pod may use (kube-dns, NodeLocal DNSCache, Cloud DNS), port 53 only: the
# gateway proxies then resolve names whatever the cluster runs, and no other port of those addresses opens.
ALL_DNS = ClusterDns(node_local_dns_cache=True, cloud_dns=True)


def benchmark_client(cfg: NetworkPolicyConfig) -> Optional[InNamespaceClient]:
    """The benchmark Jobs' labels (the ``benchmark`` inNamespaceClients entry), if benchmarks are on."""
    if cfg.benchmark_namespace is None:
        return None
    return next((c for c in cfg.in_namespace_clients if c.name == BENCHMARK_CLIENT), None)


def _webhook_policy(cfg: NetworkPolicyConfig, ns: str, cp_ranges: list[str]) -> list[dict[str, Any]]:
    # GKE calls admission webhooks through the Konnectivity agents in kube-system (Private Service
    # Connect clusters) or, on VPC-peering private clusters, from the control plane's /28: both, on the
    # webhook ports only, never the model servers (docs/sr1-network-policies.md, "Webhooks").
    if not cfg.webhook_ports.get(ns):
        return []
    peers = [ns_peer(KUBE_SYSTEM)] + [{"ipBlock": {"cidr": c}} for c in cp_ranges]
    return _allow(ns, "allow-api-server-webhooks", _rule(peers, list(cfg.webhook_ports[ns])))


def _gateway_egress(cfg: NetworkPolicyConfig, ns: str) -> list[dict[str, Any]]:
    """Egress of the Gateway proxies in ``ns``: the serving side and what they need, nothing else.

    A route a tenant manages to attach to a platform Gateway cannot make the proxy deliver LiteLLM's
    requests (and its upstream key) to a tenant pod: the proxy reaches no tenant namespace.
    """
    proxies = {"matchExpressions": [{"key": GATEWAY_NAME_LABEL, "operator": "Exists"}]}
    serving_side = []
    for target in cfg.protected_namespaces:
        rule: dict[str, Any] = {"to": [ns_peer(target)]}
        if cfg.ports is not None:
            rule["ports"] = ports_of(list(cfg.ports[target]))
        serving_side.append(rule)
    rules = serving_side + dns_rules(ALL_DNS) + [
        {"to": [ns_peer(AGENTGATEWAY_NAMESPACE)], "ports": ports_of([AGENTGATEWAY_XDS_PORT])},
        {"to": [labels_peer(OTEL_COLLECTOR_LABELS, MONITORING_NAMESPACE)], "ports": ports_of(OTLP_PORTS)},
    ]
    out = [network_policy(ns, "allow-gateway-proxy-egress", ["Egress"], egress=rules, pod_selector=proxies)]
    names = [ref.partition("/")[2] for ref in cfg.gateway_internet_egress if ref.partition("/")[0] == ns]
    if names:
        # External providers (Anthropic behind inference-gateway): public 443, no private address.
        named = {"matchExpressions": [{"key": GATEWAY_NAME_LABEL, "operator": "In", "values": names}]}
        out.append(network_policy(ns, "allow-gateway-internet-egress", ["Egress"], egress=[public_443()], pod_selector=named))
    return out


def _benchmarks_to_gateways(cfg: NetworkPolicyConfig, ns: str) -> list[dict[str, Any]]:
    # The reference benchmarks are target-agnostic: besides the servers of their own namespace they
    # measure the KServe / llm-d / inference Gateways, on the listener port only.
    bench = benchmark_client(cfg)
    if bench is None or ns == cfg.benchmark_namespace or cfg.benchmark_namespace not in cfg.protected_namespaces:
        return []
    assert cfg.benchmark_namespace is not None
    peer = {**ns_peer(cfg.benchmark_namespace), "podSelector": client_selector(bench)}
    proxies = {"matchExpressions": [{"key": GATEWAY_NAME_LABEL, "operator": "Exists"}]}
    return [network_policy(ns, "allow-benchmarks-to-gateways", ["Ingress"], pod_selector=proxies,
                           ingress=[{"from": [peer], "ports": ports_of(GATEWAY_LISTENER_PORTS)}])]


def _litellm_policies(cfg: NetworkPolicyConfig) -> list[dict[str, Any]]:
    ps = cfg.platform_services
    ns = LITELLM_NAMESPACE
    db = {"matchLabels": {CNPG_CLUSTER_LABEL: ps.database_cluster}}
    return [
        _policy(ns, "default-deny-ingress", []),
        # Tenants, agents, benchmarks and the public entry point: the proxy port, nothing else.
        network_policy(ns, "allow-proxy", ["Ingress"], pod_selector={"matchLabels": dict(LITELLM_PROXY_LABELS)},
                       ingress=[{"ports": ports_of([LITELLM_PORT])}]),
        # Virtual keys, budgets, spend: LiteLLM (proxy, migration Job), the cluster's own instances
        # (replication) and CNPG Jobs, the operator (status 8000 + 5432), Grafana's read-only datasource,
        # Prometheus on the metrics port.
        network_policy(ns, "allow-database-clients", ["Ingress"], pod_selector=db, ingress=[
            {"from": [labels_peer(LITELLM_PROXY_LABELS), labels_peer(LITELLM_MIGRATION_LABELS)], "ports": ports_of([POSTGRES_PORT])},
            {"from": [{"podSelector": db}], "ports": ports_of([POSTGRES_PORT, CNPG_STATUS_PORT])},
            {"from": [labels_peer(CNPG_OPERATOR_LABELS, ps.database_operator_namespace)],
             "ports": ports_of([CNPG_STATUS_PORT, POSTGRES_PORT])},
            {"from": [labels_peer(GRAFANA_LABELS, MONITORING_NAMESPACE)], "ports": ports_of([POSTGRES_PORT])},
            {"from": [labels_peer(PROMETHEUS_LABELS, MONITORING_NAMESPACE)], "ports": ports_of([CNPG_METRICS_PORT])},
        ]),
    ]


def _monitoring_policies(cfg: NetworkPolicyConfig) -> list[dict[str, Any]]:
    ns = MONITORING_NAMESPACE
    out = [
        _policy(ns, "default-deny-ingress", []),
        # Grafana -> Prometheus/Alertmanager, Prometheus -> Alertmanager, operator -> its instances.
        _policy(ns, "allow-in-namespace", [{"from": [{"podSelector": {}}]}]),
        # Telemetry in (agents, gateways, tenants) and the authenticated dashboard UI: every source.
        network_policy(ns, "allow-otlp", ["Ingress"], pod_selector={"matchLabels": dict(OTEL_COLLECTOR_LABELS)},
                       ingress=[{"ports": ports_of(OTLP_PORTS)}]),
        network_policy(ns, "allow-grafana", ["Ingress"], pod_selector={"matchLabels": dict(GRAFANA_LABELS)},
                       ingress=[{"ports": ports_of([GRAFANA_PORT])}]),
    ]
    clients = cfg.platform_services.prometheus_clients
    if clients:
        out.append(network_policy(ns, "allow-prometheus-queries", ["Ingress"], pod_selector={"matchLabels": dict(PROMETHEUS_LABELS)},
                                  ingress=[{"from": [ns_peer(c) for c in clients], "ports": ports_of([PROMETHEUS_PORT])}]))
    return out


def build_policies(cfg: NetworkPolicyConfig, control_plane_cidr: Optional[str] = None) -> list[dict[str, Any]]:
    """All SR1 NetworkPolicy manifests, in a deterministic order (protected namespaces as listed, then
    ``litellm`` and ``monitoring``). ``control_plane_cidr``: a private cluster's control-plane range."""
    out: list[dict[str, Any]] = []
    cp_ranges = _unique(list(cfg.control_plane_ranges) + ([control_plane_cidr] if control_plane_cidr else []))
    for ns in cfg.protected_namespaces:
        ports = None if cfg.ports is None else list(cfg.ports[ns])
        out.append(_policy(ns, "default-deny-ingress", []))
        out += _allow(ns, "allow-platform-namespaces", _rule(trusted_peers(cfg, ns), ports))
        out += _allow(ns, "allow-in-namespace-clients", _rule([_pod_peer(c) for c in cfg.in_namespace_clients], ports))
        if ns in cfg.intra_namespace:
            # Multi-node engines (LeaderWorkerSet, Ray) talk on many dynamic ports.
            out += _allow(ns, "allow-intra-namespace", _rule([{"podSelector": {}}], ports))
        out += _allow(ns, "allow-external-ranges", _rule([{"ipBlock": {"cidr": c}} for c in cfg.gke_l7_proxy_ranges], ports))
        out += _webhook_policy(cfg, ns, cp_ranges)
        out += _benchmarks_to_gateways(cfg, ns)
        out += _gateway_egress(cfg, ns)
    if cfg.platform_services.litellm:
        out += _litellm_policies(cfg)
    if cfg.platform_services.monitoring:
        out += _monitoring_policies(cfg)
        out += _webhook_policy(cfg, MONITORING_NAMESPACE, cp_ranges)
    if cfg.platform_services.litellm:
        out += _webhook_policy(cfg, LITELLM_NAMESPACE, cp_ranges)
    return out


def webhook_ports(cfg: NetworkPolicyConfig) -> list[int]:
    """Every admission-webhook port the policies open (namespaces that get policies only)."""
    written = {*cfg.protected_namespaces, *cfg.platform_services.namespaces}
    return sorted({p for ns, ports in cfg.webhook_ports.items() if ns in written for p in ports})


def resource_name(manifest: dict[str, Any]) -> str:
    """Pulumi resource name of one manifest: ``<namespace>-<name>`` (``cluster-<name>`` when cluster-scoped)."""
    md = manifest["metadata"]
    return f"{md.get('namespace', 'cluster')}-{md['name']}"


@dataclass
class NetworkPoliciesArgs:
    """Inputs of :class:`NetworkPolicies`."""

    config: NetworkPolicyConfig
    """Typed SR1 settings (``llm-platform:networkPolicy``); the manifests come from :func:`build_policies`."""
    control_plane_cidr: Optional[str] = None
    """A private cluster's control-plane /28 (``cluster.controlPlaneCidr``): webhook calls may come from it."""
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
        for manifest in build_policies(args.config, args.control_plane_cidr):
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
