"""Workload isolation: agents under GKE Sandbox (`agentIsolation`), the egress-locked serving profile
(`servingEgress`) and network policy logging (`networkPolicyLogging`), with the rules that span them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from components.config.base import (
    DNS_LABEL,
    CidrList,
    ConfigModel,
    NamespaceList,
    NamespaceName,
    namespace_list,
    no_duplicates,
    port_list,
)
from components.config.network_policy import InNamespaceClient, benchmark_client
from components.config.tenants import PodSecurityConfig
from components.platform_facts import LITELLM_NAMESPACE, LITELLM_PORT, MONITORING_NAMESPACE, OTLP_PORTS

if TYPE_CHECKING:
    from components.config.stack import StackConfig


class AgentPodSecurityConfig(PodSecurityConfig):
    """Pod Security Admission on agent namespaces (with `agentIsolation.enabled`)."""

    enforce: Literal["baseline", "restricted"] = "restricted"
    """Level the API server enforces on agent Pods (GKE Sandbox runs `restricted` Pods); warn and audit are
    always `restricted`."""


class GatewayTarget(ConfigModel):
    """A namespace (and its container ports) that agents may call."""

    namespace: NamespaceName
    """Namespace of the model gateway (selected by its immutable name label)."""
    ports: list[int] = Field(min_length=1)
    """Container ports of the gateway pods (Dataplane V2 sees the target port, not the Service port)."""

    @field_validator("ports")
    @classmethod
    def _p(cls, v: list[int]) -> list[int]:
        return port_list(v, "gateway")


class AgentIsolationConfig(ConfigModel):
    """Capability A: agent workloads under GKE Sandbox with a locked-down network (needs `security: true`)."""

    enabled: bool = False
    """Turn agent isolation on (Kyverno policy + NetworkPolicies in `namespaces`)."""
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces that hold agent workloads (tool-using agents, code runners)."""
    model_gateways: list[GatewayTarget] = Field(
        default_factory=lambda: [GatewayTarget(namespace=LITELLM_NAMESPACE, ports=[LITELLM_PORT])]
    )
    """Where agents may send model traffic: LiteLLM (4000) by default; add agentgateway here."""
    telemetry_namespace: NamespaceName = MONITORING_NAMESPACE
    """Namespace of the OpenTelemetry collector agents export to (OTLP gRPC 4317, HTTP 4318)."""
    telemetry_ports: list[int] = Field(default_factory=lambda: list(OTLP_PORTS))
    """OTLP container ports of the collector."""
    pod_security: AgentPodSecurityConfig = Field(default_factory=lambda: AgentPodSecurityConfig())
    """Pod Security Admission level enforced on the agent namespaces: `restricted` (default; GKE Sandbox
    runs restricted Pods, docs/workload-isolation.md) or `baseline` for agent images that must run as root."""

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, v: list[str]) -> list[str]:
        return namespace_list(v, item="agent namespace", platform_refusal=lambda ns: (
            f"agent namespace {ns!r} is a platform namespace; agents need their own namespace(s), e.g. `agents`"))

    @field_validator("telemetry_ports")
    @classmethod
    def _tports(cls, v: list[int]) -> list[int]:
        return port_list(v, "telemetry")

    @model_validator(mode="after")
    def _consistent(self) -> "AgentIsolationConfig":
        if self.enabled and not self.namespaces:
            raise ValueError("`enabled` is true but `namespaces` is empty: list the namespaces that hold agent workloads")
        if self.enabled and not self.model_gateways:
            raise ValueError("`modelGateways` is empty: agents would reach no model; list LiteLLM and/or agentgateway")
        for g in self.model_gateways:
            if g.namespace in self.namespaces:
                raise ValueError(f"model gateway namespace {g.namespace!r} is also an agent namespace; keep them apart")
        return self

    @property
    def written_namespace_names(self) -> list[str]:
        """Namespaces agent isolation writes NetworkPolicies into (empty when off); the stack creates or adopts them."""
        return list(self.namespaces) if self.enabled else []


def _default_api_server_clients() -> list[InNamespaceClient]:
    # Pods of a serving namespace that talk to the Kubernetes API: endpoint pickers (watch pods and
    # InferencePools) and the KServe controller.
    return [
        InNamespaceClient(name="endpoint-picker", label="inferencepool"),
        InNamespaceClient(name="kserve-controller", label="control-plane", values=["kserve-controller-manager"]),
    ]


def _default_model_hub_clients() -> list[InNamespaceClient]:
    # Pods that download weights or tokenizers from the hubs: the vLLM servers' `prestage-weights` init
    # containers and TEI (serving/*/deployment.yaml), and the benchmark Jobs (tokenizer, HF_HOME=/tmp/hf).
    return [
        InNamespaceClient(
            name="model-server", label="app.kubernetes.io/name",
            values=["raw-vllm", "coder-chat", "coder-fim", "coder-agent", "embeddings"],
        ),
        benchmark_client(),
    ]


class ServingEgressConfig(ConfigModel):
    """Capability B: the egress-locked model-serving profile (needs `security: true`)."""

    namespaces: NamespaceList = Field(default_factory=list)
    """Protected namespaces that also get default-deny egress (empty = off)."""
    model_hub_egress: Literal["none", "internet-443", "fqdn"] = "none"
    """HTTPS to model hubs: none; `internet-443` (0.0.0.0/0 minus private ranges on 443); or `fqdn`
    (GKE FQDNNetworkPolicy for `modelHubFqdns`, needs `cluster.fqdnNetworkPolicy`)."""
    model_hub_fqdns: list[str] = Field(default_factory=lambda: ["huggingface.co", "*.huggingface.co", "*.hf.co", "*.xethub.hf.co"])
    """Names (`huggingface.co`) or patterns (`*.hf.co`) allowed on 443 with `modelHubEgress: fqdn`."""
    api_server_cidrs: CidrList = Field(default_factory=list)
    """Kubernetes API server endpoint CIDRs (443); default: `cluster.controlPlaneCidr` of a private cluster."""
    api_server_clients: list[InNamespaceClient] = Field(default_factory=_default_api_server_clients)
    """Pods (by label, in the locked namespace) that may reach the API server."""
    model_hub_clients: list[InNamespaceClient] = Field(default_factory=_default_model_hub_clients)
    """Pods (by label, in the locked namespace) that `modelHubEgress` applies to: those that download models
    or tokenizers (default: the reference's vLLM and TEI servers and the benchmark Jobs)."""
    metadata_clients: list[InNamespaceClient] = Field(default_factory=list)
    """Pods (by label, in the locked namespace) that may use the metadata server (Workload Identity); default
    none: no reference serving pod calls Google APIs (add e.g. a KServe storage initializer reading gs://)."""

    @field_validator("model_hub_fqdns")
    @classmethod
    def _fqdns(cls, v: list[str]) -> list[str]:
        for name in v:
            bare = name[2:] if name.startswith("*.") else name
            if not bare or not all(DNS_LABEL.fullmatch(part) for part in bare.split(".")) or "." not in bare:
                raise ValueError(f"{name!r} is not a DNS name or `*.`-pattern (e.g. huggingface.co, *.hf.co)")
        return no_duplicates(v, "FQDN")

    @field_validator("model_hub_clients", "metadata_clients")
    @classmethod
    def _client_names(cls, v: list[InNamespaceClient]) -> list[InNamespaceClient]:
        no_duplicates([c.name for c in v], "client name")
        return v

    @model_validator(mode="after")
    def _hub_clients(self) -> "ServingEgressConfig":
        if self.model_hub_egress != "none" and not self.model_hub_clients:
            raise ValueError(
                f"`modelHubEgress` is {self.model_hub_egress!r} but `modelHubClients` is empty: list the pods that "
                "download models (label and values), or set `modelHubEgress: none`"
            )
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.namespaces)


class NetworkPolicyLoggingConfig(ConfigModel):
    """Capability C: GKE network policy logging (the cluster's `NetworkLogging` object `default`)."""

    denied: bool = False
    """Log connections denied by a NetworkPolicy to Cloud Logging."""
    allowed: bool = False
    """Also log allowed connections (verbose)."""

    @property
    def enabled(self) -> bool:
        return self.denied or self.allowed


def isolation_rules(stack: StackConfig) -> None:
    """Impossible combinations of the workload-isolation capabilities (a `StackConfig` model rule)."""
    ai, se = stack.agent_isolation, stack.serving_egress
    # Both are part of the security group: with `security: false` they are inactive (the master switch
    # removes everything), so only an active capability can be an impossible combination.
    if not stack.security:
        return
    if ai.enabled:
        if stack.cluster is not None and not stack.cluster.sandbox_pools:
            raise ValueError(
                "agentIsolation.enabled needs a GKE Sandbox node pool (the RuntimeClass `gvisor` exists only then): "
                "add a pool with `sandbox: true` to cluster.nodePools, or turn agent isolation off"
            )
        if stack.existing_cluster is not None and not stack.existing_cluster.gke_sandbox:
            raise ValueError(
                "agentIsolation.enabled needs a GKE Sandbox node pool: set existingCluster.gkeSandbox: true once the "
                "cluster has one (RuntimeClass `gvisor`), or turn agent isolation off"
            )
        trusted = set(stack.network_policy.protected_namespaces) | set(stack.network_policy.allowed_from)
        clash = [ns for ns in ai.namespaces if ns in trusted]
        if clash:
            raise ValueError(
                f"agentIsolation.namespaces {', '.join(clash)} is protected or trusted by SR1 "
                "(networkPolicy.protectedNamespaces/allowedFrom); agents must run in namespaces of their own"
            )
    if se.enabled:
        stray = [ns for ns in se.namespaces if ns not in stack.network_policy.protected_namespaces]
        if stray:
            raise ValueError(
                f"servingEgress.namespaces names {', '.join(stray)}, which is not in networkPolicy.protectedNamespaces: "
                "the profile adds egress locking to a protected namespace (its ingress side is SR1); protect it first"
            )
        if se.model_hub_egress == "fqdn" and not (stack.cluster is not None and stack.cluster.fqdn_network_policy):
            raise ValueError(
                "servingEgress.modelHubEgress is `fqdn` but the cluster does not enable FQDN network policy: set "
                "cluster.fqdnNetworkPolicy: true (a cluster this stack creates), or use `internet-443` / `none`"
            )
