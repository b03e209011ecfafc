"""Workload isolation: sandboxed agent runtimes (A) and the egress-locked serving profile (B).

Every manifest is built here, by pure functions of the typed config, so the Pulumi component, the
offline render and the proofs (``tests/test_workload_isolation.py``: nca for the NetworkPolicies,
``tests/kyverno_cel.py`` for the admission policy) all use the same objects. Off by default: with
``agentIsolation.enabled: false`` and ``servingEgress.namespaces: []`` nothing here is registered.

A. Agent namespaces (``agentIsolation.namespaces``)
   * ``agent-default-deny``: every pod, ingress **and** egress denied.
   * ``agent-allow-dns``: kube-dns pods in ``kube-system`` on UDP+TCP 53 (+ NodeLocal DNSCache
     169.254.20.10 / Cloud DNS 169.254.169.254 on 53 when ``clusterDns`` says the cluster uses them).
   * ``agent-allow-model-gateway``: the model gateway namespaces (LiteLLM 4000 by default) on their ports.
   * ``agent-allow-telemetry``: the OTLP collector namespace on 4317/4318.
   No metadata-server egress: an agent gets no Google credentials from the node.
   Admission: the ClusterPolicy in ``policies/kyverno/agent-runtime-isolation/`` (RuntimeClass
   ``gvisor``, no service-account token without a stated reason, no hostPath, no privileged), with the
   stack's scope, ``agent-namespace`` matchCondition and failure action (components/policy_model.py).

B. Egress-locked serving namespaces (``servingEgress.namespaces``, each an SR1 protected namespace,
   whose ingress stays SR1's default-deny + allow-lists):
   * ``default-deny-egress``; ``allow-dns-egress`` (as above);
   * ``allow-metadata-server-egress-<client>``: only ``metadataClients`` (Workload Identity users; none by
     default) to 169.254.169.254/32 TCP 80 and 169.254.169.252/32 TCP 988, the addresses a pod's
     Workload Identity traffic has when policy sees it (docs/workload-isolation.md);
   * ``allow-in-namespace-egress``: to the namespace's own pods (their SR1 ingress still decides);
   * ``allow-platform-egress-<client>``: the namespace's platform clients (``inNamespaceClients``:
     gateway proxy, pickers) to the other protected namespaces that trust this one (the gateway proxy
     in ``inference`` to ``serving``/``kserve``/``llm-d``), on SR1's ports for them;
   * ``allow-api-server-egress-<client>``: labelled API clients (endpoint pickers, KServe controller) to the
     API server endpoint CIDRs on 443;
   * ``allow-model-hub-egress-<client>`` (``internet-443``) or the FQDNNetworkPolicy ``allow-model-hubs-<client>``
     (``fqdn``), only for ``modelHubClients`` (the pods that download models or tokenizers);
   * ``allow-benchmark-egress`` (in ``networkPolicy.benchmarkNamespace``): the benchmark Jobs to LiteLLM's
     proxy port and the other protected namespaces' Gateway listeners.

Namespaces are always selected by the immutable ``kubernetes.io/metadata.name`` label.
"""

from __future__ import annotations

import copy
import ipaddress
import pathlib
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi

from components import policy_model
from components.config import (
    AgentIsolationConfig,
    ClusterDns,
    InNamespaceClient,
    NetworkPolicyConfig,
    ServingEgressConfig,
    StackConfig,
)
from components.kyverno import with_ready_wait
from components.network_policy import (
    GATEWAY_CLASS_LABELS,
    GATEWAY_LISTENER_PORTS,
    LITELLM_PROXY_LABELS,
    METADATA_SERVER,
    benchmark_client,
    client_selector,
    dns_rules,
    labels_peer,
    network_policy,
    ns_peer,
    ports_of,
    public_443,
    resource_name,
    trusted_namespaces,
)
from components.platform_facts import GKE_METADATA_SERVER_ADDRESS, LITELLM_NAMESPACE, LITELLM_PORT

ROOT = pathlib.Path(__file__).resolve().parent.parent
AGENT_POLICY = "agent-runtime-isolation"
AGENT_POLICY_FILE = policy_model.policy_file(AGENT_POLICY)
RUNTIME_CLASS = "gvisor"
"""The RuntimeClass GKE creates on clusters with a GKE Sandbox node pool."""
TOKEN_REASON_ANNOTATION = "llm-platform/service-account-token-reason"

GKE_METADATA_SERVER = f"{GKE_METADATA_SERVER_ADDRESS}/32"
"""gke-metadata-server's own address (port 988) on GKE >= 1.21."""

LABELS = {
    "app.kubernetes.io/managed-by": "llm-platform",
    "app.kubernetes.io/part-of": "llm-platform-workload-isolation",
}


def _policy(namespace: str, name: str, policy_types: list[str], egress: Optional[list[dict]] = None,
            pod_selector: Optional[dict] = None) -> dict[str, Any]:
    return network_policy(namespace, name, policy_types, egress=egress, pod_selector=pod_selector, labels=LABELS)


# ---------------------------------------------------------------- A: agents


def build_agent_policies(cfg: AgentIsolationConfig, dns: ClusterDns) -> list[dict[str, Any]]:
    """NetworkPolicies of every agent namespace (empty when agent isolation is off)."""
    if not cfg.enabled:
        return []
    out = []
    for ns in cfg.namespaces:
        out.append(_policy(ns, "agent-default-deny", ["Ingress", "Egress"]))
        out.append(_policy(ns, "agent-allow-dns", ["Egress"], dns_rules(dns)))
        out.append(_policy(ns, "agent-allow-model-gateway", ["Egress"], [
            {"to": [ns_peer(g.namespace)], "ports": ports_of(list(g.ports))} for g in cfg.model_gateways
        ]))
        out.append(_policy(ns, "agent-allow-telemetry", ["Egress"], [
            {"to": [ns_peer(cfg.telemetry_namespace)], "ports": ports_of(list(cfg.telemetry_ports))}
        ]))
    return out


def agent_admission_policy(cfg: AgentIsolationConfig, failure_action: str) -> Optional[dict[str, Any]]:
    """The agent ClusterPolicy scoped to ``cfg.namespaces``, with the stack's failure action."""
    if not cfg.enabled:
        return None
    policy = policy_model.set_scope(policy_model.load_policy(AGENT_POLICY), cfg.namespaces, {}, {})
    quoted = ", ".join(f"'{ns}'" for ns in cfg.namespaces)  # DNS-1123 labels: nothing to escape
    return policy_model.apply(policy, match_conditions={"agent-namespace": f"request.namespace in [{quoted}]"},
                              failure_action=failure_action)


# ---------------------------------------------------------------- B: egress-locked serving


def api_server_cidrs(settings: StackConfig) -> list[str]:
    """API server endpoint CIDRs: configured, else a private cluster's control-plane /28."""
    se = settings.serving_egress
    if se.api_server_cidrs:
        return list(se.api_server_cidrs)
    if settings.cluster is not None and settings.cluster.control_plane_cidr:
        return [settings.cluster.control_plane_cidr]
    return []


_client_selector = client_selector


def build_serving_egress_policies(
    se: ServingEgressConfig, np: NetworkPolicyConfig, dns: ClusterDns, api_cidrs: list[str]
) -> list[dict[str, Any]]:
    """Egress-locking NetworkPolicies (and the FQDNNetworkPolicy with ``fqdn``) of every locked namespace."""
    out: list[dict[str, Any]] = []
    trusted = trusted_namespaces(np)
    for ns in se.namespaces:
        out.append(_policy(ns, "default-deny-egress", ["Egress"]))
        out.append(_policy(ns, "allow-dns-egress", ["Egress"], dns_rules(dns)))
        # Credentials from the metadata server only for the pods that use Workload Identity.
        for client in se.metadata_clients:
            out.append(_policy(ns, f"allow-metadata-server-egress-{client.name}", ["Egress"], [
                {"to": [{"ipBlock": {"cidr": METADATA_SERVER}}], "ports": ports_of([80])},
                {"to": [{"ipBlock": {"cidr": GKE_METADATA_SERVER}}], "ports": ports_of([988])},
            ], pod_selector=_client_selector(client)))
        out.append(_policy(ns, "allow-in-namespace-egress", ["Egress"], [{"to": [{"podSelector": {}}]}]))
        # Platform clients of this namespace (gateway proxy, pickers: `networkPolicy.inNamespaceClients`)
        # to the other protected namespaces that trust this one, on SR1's ports for them. SR1 trusts the
        # whole namespace for ingress; egress is narrower: model servers here get none of it.
        targets = [p for p in np.protected_namespaces if p != ns and ns in trusted]
        rules = []
        for p in targets:
            rule: dict[str, Any] = {"to": [ns_peer(p)]}
            if np.ports is not None:
                rule["ports"] = ports_of(list(np.ports[p]))
            rules.append(rule)
        if rules:
            for client in np.in_namespace_clients:
                out.append(_policy(ns, f"allow-platform-egress-{client.name}", ["Egress"], rules,
                                   pod_selector=_client_selector(client)))
        if api_cidrs:
            out += [api_server_policy(ns, client, api_cidrs) for client in se.api_server_clients]
        # Model hubs only for the pods that download models or tokenizers.
        for client in se.model_hub_clients if se.model_hub_egress != "none" else []:
            if se.model_hub_egress == "internet-443":
                out.append(_policy(ns, f"allow-model-hub-egress-{client.name}", ["Egress"], [public_443()],
                                   pod_selector=_client_selector(client)))
            else:
                out.append(fqdn_policy(ns, list(se.model_hub_fqdns), client))
        out += _benchmark_egress(np, ns)
    return out


def _benchmark_egress(np: NetworkPolicyConfig, ns: str) -> list[dict[str, Any]]:
    """The benchmark Jobs of a locked namespace to LiteLLM's proxy and the other Gateways' listeners."""
    bench = benchmark_client(np)
    if bench is None or ns != np.benchmark_namespace:
        return []
    rules = [{"to": [labels_peer(LITELLM_PROXY_LABELS, LITELLM_NAMESPACE)], "ports": ports_of([LITELLM_PORT])}]
    rules += [
        {"to": [labels_peer(GATEWAY_CLASS_LABELS, p)], "ports": ports_of(GATEWAY_LISTENER_PORTS)}
        for p in np.protected_namespaces if p != ns
    ]
    return [_policy(ns, f"allow-{bench.name}-egress", ["Egress"], rules, pod_selector=_client_selector(bench))]


def api_server_policy(namespace: str, client: InNamespaceClient, cidrs: list[str]) -> dict[str, Any]:
    """``allow-api-server-egress-<client>``: the client's pods to the API server endpoint(s) on 443."""
    return _policy(namespace, f"allow-api-server-egress-{client.name}", ["Egress"], [
        {"to": [{"ipBlock": {"cidr": c}} for c in cidrs], "ports": ports_of([443])}
    ], pod_selector=_client_selector(client))


def endpoint_cidr(endpoint: str) -> str:
    """The cluster endpoint address as a /32 (GKE reports an IPv4 address)."""
    try:
        return f"{ipaddress.IPv4Address(endpoint)}/32"
    except ValueError as e:
        raise ValueError(
            f"cluster endpoint {endpoint!r} is not an IPv4 address: set servingEgress.apiServerCidrs explicitly"
        ) from e


def fqdn_policy(namespace: str, fqdns: list[str], client: InNamespaceClient) -> dict[str, Any]:
    """GKE FQDNNetworkPolicy: HTTPS to the model hubs by name for ``client``'s pods (FQDN policy on)."""
    matches = [{"pattern": f} if f.startswith("*") else {"name": f} for f in fqdns]
    return {
        "apiVersion": "networking.gke.io/v1alpha1",
        "kind": "FQDNNetworkPolicy",
        "metadata": {"name": f"allow-model-hubs-{client.name}", "namespace": namespace, "labels": dict(LABELS)},
        "spec": {"podSelector": _client_selector(client),
                 "egress": [{"matches": matches, "ports": [{"protocol": "TCP", "port": 443}]}]},
    }


def build_all(settings: StackConfig) -> list[dict[str, Any]]:
    """Every Kubernetes object of capabilities A and B for this stack (policies in apply order).

    Both belong to the security group: nothing with ``security: false``.
    """
    if not settings.security:
        return []
    out = build_agent_policies(settings.agent_isolation, settings.cluster_dns)
    if settings.serving_egress.enabled:
        out += build_serving_egress_policies(
            settings.serving_egress, settings.network_policy, settings.cluster_dns, api_server_cidrs(settings)
        )
    admission = agent_admission_policy(settings.agent_isolation, settings.kyverno.failure_action)
    if admission is not None:
        # `pulumi up` fails unless Kyverno reports the policy Ready, as for SR2's policy.
        out.append(with_ready_wait(admission))
    return out


# ---------------------------------------------------------------- Pulumi component


@dataclass
class WorkloadIsolationArgs:
    """Inputs of :class:`WorkloadIsolation`."""

    settings: StackConfig
    """The validated stack config (agentIsolation, servingEgress, clusterDns, networkPolicy, kyverno)."""
    kyverno_release: Optional[pulumi.Resource] = None
    """The Kyverno Helm release; the agent ClusterPolicy waits for it (its CRD and webhook)."""
    api_server_endpoint: Optional[pulumi.Input[str]] = None
    """The cluster's endpoint address (a cluster this stack creates): the API server destination of the
    egress-locked profile when neither `servingEgress.apiServerCidrs` nor a private `controlPlaneCidr` is set."""
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """Other resources the NetworkPolicies wait for."""
    namespaces: dict[str, pulumi.Resource] = field(default_factory=dict)
    """The Namespace resource (created or adopted) of each namespace written into; each object depends on its own."""


class WorkloadIsolation(pulumi.ComponentResource):
    """Agent isolation and the egress-locked serving profile: one child per manifest of :func:`build_all`."""

    def __init__(self, name: str, args: WorkloadIsolationArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:security:WorkloadIsolation", name, None, opts)
        import pulumi_kubernetes as k8s

        self.resources: list[pulumi.Resource] = []
        names: list[str] = []
        def after(ns: Optional[str]) -> list[pulumi.Resource]:
            # Every namespaced object waits for its namespace (created or adopted by the stack).
            return [*args.depends_on, *([args.namespaces[ns]] if ns in args.namespaces else [])]

        for m in build_all(args.settings):
            rname = resource_name(m)
            res: pulumi.CustomResource
            if m["kind"] == "NetworkPolicy":
                res = k8s.networking.v1.NetworkPolicy(
                    rname, metadata=m["metadata"], spec=m["spec"],
                    opts=pulumi.ResourceOptions(parent=self, depends_on=after(m["metadata"].get("namespace"))),
                )
            else:
                deps = after(m["metadata"].get("namespace")) + ([args.kyverno_release] if m["kind"] == "ClusterPolicy" and args.kyverno_release else [])
                res = k8s.apiextensions.CustomResource(
                    rname, api_version=m["apiVersion"], kind=m["kind"], metadata=m["metadata"],
                    spec=copy.deepcopy(m["spec"]), opts=pulumi.ResourceOptions(parent=self, depends_on=deps),
                )
            self.resources.append(res)
            names.append(rname)
        s = args.settings
        if s.security and s.serving_egress.enabled and not api_server_cidrs(s) and args.api_server_endpoint is not None:
            # Public endpoint known only once the cluster exists: same policy, destination filled in later.
            endpoint = pulumi.Output.from_input(args.api_server_endpoint)
            for ns in s.serving_egress.namespaces:
                for client in s.serving_egress.api_server_clients:
                    m = api_server_policy(ns, client, ["0.0.0.0/32"])
                    rname = resource_name(m)
                    def locked_spec(ip: str, ns: str = ns, c: Any = client) -> Any:
                        return api_server_policy(ns, c, [endpoint_cidr(ip)])["spec"]

                    spec = endpoint.apply(locked_spec)
                    self.resources.append(k8s.networking.v1.NetworkPolicy(
                        rname, metadata=m["metadata"], spec=spec,
                        opts=pulumi.ResourceOptions(parent=self, depends_on=after(ns)),
                    ))
                    names.append(rname)
        self.register_outputs({"resources": names})
