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

PLATFORM_GATEWAYS: tuple[tuple[str, str], ...] = (
    ("inference", "inference-gateway"),
    ("kserve", "kserve-ingress-gateway"),
)
"""(namespace, name) of the reference platform's shared Gateways whose listeners accept routes from every
namespace (`allowedRoutes.namespaces.from: All`): `inference-gateway` (LiteLLM's upstream) and KServe's
`kserve-ingress-gateway`. llm-d's `llm-d-gateway` accepts only its own namespace's routes. The default of
`tenantBoundaries.platformGateways`."""

PLATFORM_ROUTE_NAMESPACES: tuple[str, ...] = ("agentgateway-system",)
"""Namespaces besides the protected ones whose routes attach to the platform Gateways (the reference
platform's `egress-anthropic` HTTPRoute lives in `agentgateway-system`). The default of
`tenantBoundaries.routeNamespaces`."""

# ---- services around SR1's protected namespaces (docs/sr1-network-policies.md, "Where the facts come from")

LITELLM_NAMESPACE = "litellm"
"""LiteLLM, the tenants' only way to the models, and its CloudNativePG database (litellm-pg)."""
LITELLM_PORT = 4000
"""LiteLLM proxy container port (chart litellm-helm: `containerPort: 4000`)."""
MONITORING_NAMESPACE = "monitoring"
"""Prometheus (Operator), Grafana and the OpenTelemetry collector."""
OTLP_PORTS: tuple[int, ...] = (4317, 4318)
"""OpenTelemetry collector: OTLP gRPC and HTTP."""
AGENTGATEWAY_NAMESPACE = "agentgateway-system"
"""The agentgateway controller (xDS for the proxies); each Gateway's proxy runs in the Gateway's namespace."""
MANAGED_PROMETHEUS_NAMESPACE = "gmp-system"
"""GKE Managed Prometheus: its collectors scrape the model servers (SR1's `managedPrometheus`)."""

# ---- pod labels of the platform's workloads (matchLabels: nca matches no cross-namespace `Exists` peer)

GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
"""On every Gateway proxy pod, with the Gateway's name (Gateway API; agentgateway chart selector labels)."""
GATEWAY_CLASS_LABELS: dict[str, str] = {"gateway.networking.k8s.io/gateway-class-name": "agentgateway"}
"""On every agentgateway proxy pod, whatever its Gateway and namespace (the chart's `kgateway.gateway.selectorLabels`);
the controller pod does not carry it."""
LITELLM_PROXY_LABELS: dict[str, str] = {"app.kubernetes.io/name": "litellm"}
"""LiteLLM's proxy pods (chart litellm-helm `litellm.selectorLabels`); not its migration Job, not its database."""
PROMETHEUS_LABELS: dict[str, str] = {"app.kubernetes.io/name": "prometheus"}
"""Prometheus server pods as the Prometheus Operator (kube-prometheus-stack) labels them; not Grafana, the
operator, Alertmanager or the OpenTelemetry collector."""
GMP_COLLECTOR_LABELS: dict[str, str] = {"app.kubernetes.io/name": "collector"}
"""GKE Managed Prometheus' collector DaemonSet pods (prometheus-engine `collector.selectorLabels`); not its
operator or rule-evaluator."""

TRUSTED_PLATFORM_PODS: dict[str, tuple[dict[str, str], ...]] = {
    LITELLM_NAMESPACE: (LITELLM_PROXY_LABELS,),
    "inference": (GATEWAY_CLASS_LABELS,),
    AGENTGATEWAY_NAMESPACE: (GATEWAY_CLASS_LABELS,),
    MONITORING_NAMESPACE: (PROMETHEUS_LABELS,),
    MANAGED_PROMETHEUS_NAMESPACE: (GMP_COLLECTOR_LABELS,),
}
"""Per trusted namespace, the pods (each a label set, any one matches) that call SR1's protected namespaces:
LiteLLM's proxy (its backends), the gateway proxies in `inference` (`inference-gateway` -> the raw-vllm pool
in `serving`), Prometheus (scrapes), the GMP collectors. `agentgateway-system` runs only the controller, which
serves xDS and calls no backend (`egress-anthropic` there is executed by `inference-gateway`'s proxy): only
the proxy of a Gateway created there would be trusted. The default of `networkPolicy.allowedFromPods`."""

# ---- name resolution and the metadata server, as a GKE pod sees them

KUBE_DNS_NAMESPACE = "kube-system"
KUBE_DNS_LABELS: dict[str, str] = {"k8s-app": "kube-dns"}
"""kube-dns pods (GKE's default cluster DNS), in KUBE_DNS_NAMESPACE, on port 53."""
NODE_LOCAL_DNS_ADDRESS = "169.254.20.10"
"""NodeLocal DNSCache's address on every node (GKE), port 53."""
METADATA_SERVER_ADDRESS = "169.254.169.254"
"""The metadata server: its API on port 80, and Cloud DNS for GKE's resolver on port 53."""
GKE_METADATA_SERVER_ADDRESS = "169.254.169.252"
"""GKE's metadata server for Workload Identity, port 988."""
