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
