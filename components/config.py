"""Typed stack configuration: the one place Pulumi config is read and validated.

The program calls :func:`load` once; every component receives typed settings from here.
Any problem becomes one :class:`ConfigError` naming the key path, what is wrong and how
to fix it, raised before a single resource is registered.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from typing import Any, Literal, Mapping, Optional, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from components.platform_facts import (
    DEFAULT_PROTECTED_NAMESPACES,
    LITELLM_NAMESPACE,
    LITELLM_PORT,
    MONITORING_NAMESPACE,
    OTLP_PORTS,
    PLATFORM_GATEWAYS,
    PLATFORM_ROUTE_NAMESPACES,
)

PROJECT = "llm-platform"

# Namespaces the platform itself owns; a tenant may not take one of these names.
PLATFORM_NAMESPACES = frozenset(
    {
        *DEFAULT_PROTECTED_NAMESPACES,
        "litellm",
        "agentgateway-system",
        "monitoring",
        "kyverno",
        "kueue-system",
        "gmp-system",
        "gmp-public",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "default",
    }
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_ZONE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
_SA_EMAIL = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[-a-z0-9.]+\.iam\.gserviceaccount\.com$")


class ConfigError(ValueError):
    """A stack configuration problem, phrased for the person editing Pulumi.<stack>.yaml."""


def _dns_label(value: str, what: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a valid {what}: use at most 63 lowercase letters, digits "
            "and '-', starting and ending with a letter or digit (DNS-1123 label)"
        )
    return value


_T = TypeVar("_T")


def _no_duplicates(values: list[_T], what: str) -> list[_T]:
    seen: set[_T] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{what} {v!r} is listed twice; list each once")
        seen.add(v)
    return values


class _Model(BaseModel):
    # camelCase keys as Pulumi users write them; unknown keys are errors, not silently ignored.
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        use_attribute_docstrings=True,
    )


# ---------------------------------------------------------------- cluster


class Gpu(_Model):
    """GPUs attached to every node of a pool."""

    type: str
    """Accelerator type, e.g. ``nvidia-l4``, ``nvidia-h100-80gb``."""
    count: int = Field(ge=1, le=16)
    """GPUs per node (1-16)."""
    driver_version: Literal["DEFAULT", "LATEST", "INSTALLATION_DISABLED"] = "DEFAULT"
    """GKE-managed NVIDIA driver installation; INSTALLATION_DISABLED leaves it to you."""


class NodePool(_Model):
    """One GKE node pool."""

    name: str
    """Pool name (DNS-1123 label)."""
    machine_type: str = "e2-standard-4"
    """Compute Engine machine type."""
    min_nodes: int = Field(1, ge=0)
    """Autoscaler minimum per zone."""
    max_nodes: int = Field(3, ge=1)
    """Autoscaler maximum per zone."""
    spot: bool = False
    """Use Spot VMs (cheaper, preemptible)."""
    disk_size_gb: int = Field(100, ge=10)
    """Boot disk size."""
    gpu: Optional[Gpu] = None
    """Attach GPUs to every node (`{type, count}`)."""
    sandbox: bool = False
    """Run the pool under GKE Sandbox (gVisor); needs COS_CONTAINERD, set automatically."""
    node_locations: list[str] = Field(default_factory=list)
    """Zones of this pool (default: the cluster's); required for GPU pools of a regional cluster."""

    @field_validator("node_locations")
    @classmethod
    def _zones(cls, v: list[str]) -> list[str]:
        for z in v:
            if not _ZONE.match(z):
                raise ValueError(f"{z!r} is not a zone; write it like europe-west4-b")
        return _no_duplicates(v, "zone")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _dns_label(v, "node pool name")

    @model_validator(mode="after")
    def _sizes(self) -> "NodePool":
        if self.min_nodes > self.max_nodes:
            raise ValueError(
                f"minNodes ({self.min_nodes}) is greater than maxNodes ({self.max_nodes}); "
                "make minNodes <= maxNodes"
            )
        return self


class AuthorizedNetwork(_Model):
    """A CIDR allowed to reach the control plane."""

    cidr: str
    """IPv4 CIDR, e.g. 203.0.113.0/24."""
    name: str = ""
    """Display name shown in the console."""

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        try:
            return str(ipaddress.IPv4Network(v, strict=True))
        except ValueError as e:
            raise ValueError(f"{v!r} is not an IPv4 CIDR ({e}); write it like 203.0.113.0/24") from e


class DatapathObservability(_Model):
    """Dataplane V2 observability (GKE `advanced_datapath_observability_config`)."""

    metrics: bool = False
    """Export Dataplane V2 metrics (flow and policy-verdict counters) to Cloud Monitoring / Managed Prometheus."""
    relay: bool = False
    """Run Hubble Relay so `kubectl`/`hubble observe` can follow flows and drop reasons live."""


class ClusterConfig(_Model):
    """A GKE cluster this stack creates and owns."""

    name: str
    """Cluster name (DNS-1123 label, at most 40 characters)."""
    location: str
    """Region (regional cluster, e.g. europe-west4) or zone (zonal, e.g. europe-west4-a)."""
    release_channel: Literal["RAPID", "REGULAR", "STABLE"] = "REGULAR"
    """GKE release channel."""
    network: str = "default"
    """VPC network name."""
    subnetwork: Optional[str] = None
    """Subnetwork name; GKE's default when unset."""
    private_nodes: bool = False
    """Nodes get internal IPs only."""
    control_plane_cidr: Optional[str] = None
    """/28 for the control plane; required with privateNodes."""
    authorized_networks: list[AuthorizedNetwork] = Field(default_factory=list)
    """CIDRs allowed to reach the control plane endpoint; empty = no restriction list."""
    node_pools: list[NodePool] = Field(min_length=1)
    """Node pools; the first non-sandbox pool is the system pool."""
    deletion_protection: bool = True
    """Replacement guard: Pulumi `protect` on the cluster and its node pools, and pulumi-gcp's `deletion_protection`
    on the cluster (a provider-side check, not a GKE setting)."""
    allow_replacement: bool = False
    """Lift the replacement guard for one deliberate `pulumi up`."""
    control_plane_access: Literal["dns", "ip"] = "dns"
    """How kubectl, the provider and CI reach the API server: `dns` = GKE's DNS-based endpoint
    authorised by IAM (reachable from GitHub-hosted runners); `ip` = the IP endpoint, limited by
    authorizedNetworks (CI then needs runners inside one of those ranges)."""
    cloud_nat: Optional[bool] = None
    """Create a Cloud Router + Cloud NAT for node egress; default: on exactly when privateNodes."""
    node_service_account: Optional[str] = None
    """Email of an existing node service account; default: the stack creates `<name>-nodes` with
    `roles/container.defaultNodeServiceAccount` only."""
    datapath_observability: "DatapathObservability" = Field(default_factory=lambda: DatapathObservability())
    """Dataplane V2 metrics and flow observability (`monitoring_config.advanced_datapath_observability_config`); off by default."""
    fqdn_network_policy: bool = False
    """Enable GKE FQDN network policy (FQDNNetworkPolicy objects); needed by `servingEgress.modelHubEgress: fqdn`."""

    @property
    def sandbox_pools(self) -> list[str]:
        """Names of the GKE Sandbox (gVisor) node pools; the RuntimeClass `gvisor` exists only with one."""
        return [p.name for p in self.node_pools if p.sandbox]

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        _dns_label(v, "cluster name")
        if len(v) > 40:
            raise ValueError(f"{v!r} is {len(v)} characters; GKE allows at most 40")
        return v

    @field_validator("location")
    @classmethod
    def _location(cls, v: str) -> str:
        if not (_REGION.match(v) or _ZONE.match(v)):
            raise ValueError(
                f"{v!r} is neither a region (e.g. europe-west4) nor a zone (e.g. europe-west4-a)"
            )
        return v

    @field_validator("control_plane_cidr")
    @classmethod
    def _cp_cidr(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        try:
            net = ipaddress.IPv4Network(v, strict=True)
        except ValueError as e:
            raise ValueError(f"{v!r} is not an IPv4 CIDR ({e}); write it like 172.16.0.32/28") from e
        if net.prefixlen != 28 or not net.is_private:
            raise ValueError(f"{v!r} must be a private /28 (GKE requirement), e.g. 172.16.0.32/28")
        return str(net)

    @model_validator(mode="after")
    def _cluster_rules(self) -> "ClusterConfig":
        _no_duplicates([p.name for p in self.node_pools], "node pool name")
        if all(p.sandbox for p in self.node_pools):
            raise ValueError(
                "every node pool has sandbox: true; GKE needs at least one pool without "
                "GKE Sandbox for system workloads: add one"
            )
        if self.private_nodes and self.control_plane_cidr is None:
            raise ValueError("privateNodes is true but controlPlaneCidr is missing: set a private /28")
        if not self.private_nodes and self.control_plane_cidr is not None:
            raise ValueError("controlPlaneCidr is set but privateNodes is false: remove it or enable privateNodes")
        for i, pool in enumerate(self.node_pools):
            for z in pool.node_locations:
                if z.rsplit("-", 1)[0] != self.region:
                    raise ValueError(
                        f"nodePools[{i}].nodeLocations: zone {z!r} is not in the cluster's region "
                        f"{self.region!r}; list zones of {self.region}"
                    )
            if pool.gpu and self.regional and not pool.node_locations:
                raise ValueError(
                    f"nodePools[{i}] ({pool.name!r}) has GPUs in a regional cluster but no nodeLocations: "
                    f"not every zone of {self.region} offers {pool.gpu.type}; set nodeLocations to the zones "
                    f"that do (gcloud compute accelerator-types list --filter='zone~{self.region}')"
                )
        if self.node_service_account is not None and not _SA_EMAIL.match(self.node_service_account):
            raise ValueError(
                f"nodeServiceAccount {self.node_service_account!r} is not a service account email "
                "(name@project.iam.gserviceaccount.com); remove it to let the stack create one"
            )
        return self

    @property
    def nat(self) -> bool:
        """Whether the stack creates Cloud Router + NAT (explicit cloudNat, else privateNodes)."""
        return self.private_nodes if self.cloud_nat is None else self.cloud_nat

    @property
    def regional(self) -> bool:
        return bool(_REGION.match(self.location))

    @property
    def region(self) -> str:
        return self.location if self.regional else self.location.rsplit("-", 1)[0]


class ExistingCluster(_Model):
    """A cluster someone else manages; the stack creates no GKE resources."""

    context: str
    """kubeconfig context name to deploy into."""
    kubeconfig: Optional[str] = None
    """Path to the kubeconfig file (`~` and `$VARS` expanded, made absolute); default: $KUBECONFIG or ~/.kube/config."""
    network_policy_enforced: bool
    """Required: does the cluster enforce NetworkPolicy (Dataplane V2, Calico, ...)?"""
    gke_sandbox: bool = False
    """Does the cluster have a GKE Sandbox node pool (RuntimeClass `gvisor`)? Needed by `agentIsolation`."""

    @field_validator("kubeconfig")
    @classmethod
    def _kubeconfig_path(cls, v: Optional[str]) -> Optional[str]:
        # kubectl does not expand `~` or `$VAR` in KUBECONFIG, and the destroy-time cleanup runs
        # kubectl with this path: expand it here, absolute against the project directory.
        if v is None:
            return v
        expanded = os.path.expandvars(os.path.expanduser(v.strip()))
        if not expanded or "$" in expanded or expanded.startswith("~"):
            raise ValueError(
                f"{v!r} does not expand to a file path (unset variable or unknown user?); "
                "write an absolute path such as /home/me/.kube/platform.yaml"
            )
        return os.path.abspath(expanded)


# ---------------------------------------------------------------- SR1


def _ports(values: list[int], what: str) -> list[int]:
    for p in values:
        if not 1 <= p <= 65535:
            raise ValueError(f"{what} port {p} is out of range; use 1-65535")
    return _no_duplicates(values, f"{what} port")


class InNamespaceClient(_Model):
    """Platform pods that reach every pod of *their own* protected namespace, selected by one label.

    The rule is emitted as a ``podSelector`` peer without a ``namespaceSelector``, which Kubernetes
    reads as "pods with this label in the policy's own namespace": a tenant pod carrying the same
    label in another namespace matches nothing.
    """

    name: str
    """What these pods are (shown in docs and rule comments), e.g. ``gateway-proxy``."""
    label: str
    """Label key on the pod, e.g. ``gateway.networking.k8s.io/gateway-name``."""
    values: list[str] = Field(default_factory=list)
    """Accepted label values; empty = any value (the key exists)."""

    @field_validator("label")
    @classmethod
    def _label(cls, v: str) -> str:
        if not _LABEL_KEY.match(v):
            raise ValueError(f"{v!r} is not a label key (optional DNS prefix '/', then a name of at most 63 characters)")
        return v

    @field_validator("values")
    @classmethod
    def _values(cls, v: list[str]) -> list[str]:
        for x in v:
            if not _LABEL_VALUE.match(x):
                raise ValueError(f"{x!r} is not a label value (at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends)")
        return _no_duplicates(v, "label value")


_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


BENCHMARK_CLIENT = "benchmark"
"""Name of the `inNamespaceClients` entry whose labels select the benchmark Jobs (also across namespaces)."""


def _benchmark_client() -> InNamespaceClient:
    # benchmarks/job.yaml, benchmarks/guidellm-job.yaml of the reference platform.
    return InNamespaceClient(name=BENCHMARK_CLIENT, label="app.kubernetes.io/name", values=["vllm-bench", "guidellm-bench"])


def _default_in_namespace_clients() -> list[InNamespaceClient]:
    # Labels from the upstream sources (docs/sr1-network-policies.md, "Where the facts come from").
    return [
        InNamespaceClient(name="gateway-proxy", label="gateway.networking.k8s.io/gateway-name"),
        InNamespaceClient(name="endpoint-picker", label="inferencepool"),
        InNamespaceClient(name="llm-inference-service", label="app.kubernetes.io/part-of", values=["llminferenceservice"]),
        _benchmark_client(),
    ]


class PlatformServicesConfig(_Model):
    """Ingress of the two platform namespaces around SR1: LiteLLM (and its database) and monitoring."""

    litellm: bool = True
    """Default-deny ingress in `litellm`: every source reaches the proxy port only; its CloudNativePG
    database only LiteLLM, its own instances, the CNPG operator and monitoring (Grafana, Prometheus)."""
    monitoring: bool = True
    """Default-deny ingress in `monitoring`: every source reaches the OTLP collector (4317/4318) and
    Grafana (3000) only; Prometheus (9090) only `prometheusClients`; the rest only `monitoring` itself."""
    database_operator_namespace: str = "cnpg-system"
    """Namespace of the CloudNativePG operator (reference: catalog/llm-gateway-core/cloudnative-pg.yaml)."""
    database_cluster: str = "litellm-pg"
    """Name of LiteLLM's CloudNativePG `Cluster` (its pods carry `cnpg.io/cluster: <name>`)."""
    prometheus_clients: list[str] = Field(default_factory=lambda: ["keda"])
    """Namespaces that query Prometheus on 9090 (KEDA's operator: serving/raw-vllm/scaledobject.yaml)."""

    @field_validator("database_operator_namespace", "database_cluster")
    @classmethod
    def _name(cls, v: str) -> str:
        return _dns_label(v, "name")

    @field_validator("prometheus_clients")
    @classmethod
    def _clients(cls, v: list[str]) -> list[str]:
        for ns in v:
            _dns_label(ns, "namespace name")
        return _no_duplicates(v, "namespace")

    @property
    def namespaces(self) -> list[str]:
        """The service namespaces that get policies."""
        return [ns for ns, on in ((LITELLM_NAMESPACE, self.litellm), (MONITORING_NAMESPACE, self.monitoring)) if on]


class NetworkPolicyConfig(_Model):
    """SR1 NetworkPolicies in every protected namespace (active with `security: true`)."""

    protected_namespaces: list[str] = Field(default_factory=lambda: list(DEFAULT_PROTECTED_NAMESPACES))
    """Namespaces that run model servers, endpoint pickers or gateway proxies; each gets default-deny
    ingress plus the same platform allow-list."""
    allowed_from: list[str] = Field(
        default_factory=lambda: ["litellm", "inference", "agentgateway-system", "monitoring"]
    )
    """Trusted platform namespaces that reach every protected namespace (a namespace never gets a
    namespace-wide allow into itself; its own flows are `inNamespaceClients`)."""
    in_namespace_clients: list[InNamespaceClient] = Field(default_factory=_default_in_namespace_clients)
    """Pods (by label) that reach every pod of their own protected namespace: gateway proxies,
    endpoint pickers/schedulers, llm-d decode/prefill, benchmark clients."""
    ports: Optional[dict[str, list[int]]] = None
    """Opt-in port scoping: namespace -> the container ports every allow rule into it opens. Unset
    (default) = every port. When set it must list every protected namespace."""
    managed_prometheus: bool = False
    """Also allow GKE Managed Prometheus (`gmp-system`) like a trusted namespace."""
    gke_l7_proxy_ranges: list[str] = Field(default_factory=list)
    """CIDRs of a GKE-managed Gateway's proxies (proxy-only subnet, 35.191.0.0/16, 130.211.0.0/22) to the protected namespaces."""
    control_plane_ranges: list[str] = Field(default_factory=list)
    """CIDRs the Kubernetes API server calls admission webhooks from (e.g. the KServe controller in `kserve`)."""
    intra_namespace: list[str] = Field(default_factory=list)
    """Protected namespaces whose pods all reach each other on every port (multi-node engines: LeaderWorkerSet, Ray)."""
    webhook_ports: dict[str, list[int]] = Field(
        default_factory=lambda: {"kserve": [9443], MONITORING_NAMESPACE: [10250]}
    )
    """Protected (or service) namespace -> admission-webhook container ports the API server may reach, from
    `kube-system` (Konnectivity agents) and from the private control plane's range (default: the KServe
    controllers' 9443 in `kserve`, the Prometheus Operator's 10250 in `monitoring`; a default entry applies
    only while its namespace gets policies)."""
    platform_services: PlatformServicesConfig = Field(default_factory=PlatformServicesConfig)
    """Ingress policies of `litellm` and `monitoring` (docs/sr1-network-policies.md, "Around SR1")."""
    gateway_internet_egress: list[str] = Field(default_factory=lambda: ["inference/inference-gateway"])
    """`namespace/name` of the Gateways whose proxies may call public HTTPS (443) besides the serving side:
    `inference-gateway` calls Anthropic for LiteLLM's `claude-haiku` (reference: routing/gateway-api-inference/egress/;
    the default entry applies only while `inference` is protected)."""
    benchmark_namespace: Optional[str] = "serving"
    """Namespace of the benchmark Jobs (the `benchmark` inNamespaceClients entry): they also reach the
    Gateway proxies of the other protected namespaces on the listener port; null = no such flow (the default
    applies only while `serving` is protected)."""

    @field_validator("protected_namespaces", "allowed_from", "intra_namespace")
    @classmethod
    def _namespaces(cls, v: list[str]) -> list[str]:
        for ns in v:
            _dns_label(ns, "namespace name")
        return _no_duplicates(v, "namespace")

    @field_validator("gateway_internet_egress")
    @classmethod
    def _gateways(cls, v: list[str]) -> list[str]:
        for ref in v:
            ns, sep, name = ref.partition("/")
            if not sep:
                raise ValueError(f"{ref!r} is not `namespace/name` of a Gateway, e.g. inference/inference-gateway")
            _dns_label(ns, "namespace name")
            _dns_label(name, "Gateway name")
        return _no_duplicates(v, "Gateway")

    @field_validator("gke_l7_proxy_ranges", "control_plane_ranges")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        out = []
        for c in v:
            try:
                out.append(str(ipaddress.IPv4Network(c, strict=True)))
            except ValueError as e:
                raise ValueError(f"{c!r} is not an IPv4 CIDR ({e})") from e
        return _no_duplicates(out, "CIDR")

    @field_validator("in_namespace_clients")
    @classmethod
    def _clients(cls, v: list[InNamespaceClient]) -> list[InNamespaceClient]:
        _no_duplicates([c.name for c in v], "inNamespaceClients name")
        return v

    @field_validator("ports")
    @classmethod
    def _scoped_ports(cls, v: Optional[dict[str, list[int]]]) -> Optional[dict[str, list[int]]]:
        if v is None:
            return v
        if not v:
            raise ValueError(
                "`ports` is empty: remove it (= every port, the default) or list the container ports of "
                "every protected namespace"
            )
        for ns, ports in v.items():
            if not ports:
                raise ValueError(
                    f"`ports.{ns}` is empty, which would close {ns} to every platform caller; list its "
                    "container ports or remove `ports` (= every port)"
                )
            _ports(ports, f"`{ns}`")
        return v

    @field_validator("webhook_ports")
    @classmethod
    def _webhook_ports(cls, v: dict[str, list[int]]) -> dict[str, list[int]]:
        for ns, ports in v.items():
            _dns_label(ns, "namespace name")
            _ports(ports, f"`{ns}`")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "NetworkPolicyConfig":
        if not self.protected_namespaces:
            raise ValueError(
                "`protectedNamespaces` is empty: SR1 would protect nothing; list the namespaces that run "
                "model servers (default: serving, inference, kserve, llm-d) or turn `security` off"
            )
        stray = [ns for ns in self.intra_namespace if ns not in self.protected_namespaces]
        if stray:
            raise ValueError(
                f"`intraNamespace` names {', '.join(stray)}, which is not in `protectedNamespaces`; "
                "list only protected namespaces there"
            )
        services = self.platform_services.namespaces
        clash = [ns for ns in services if ns in self.protected_namespaces]
        if clash:
            raise ValueError(
                f"`protectedNamespaces` lists {', '.join(clash)}, which has its own policies under `platformServices`; "
                "remove it from `protectedNamespaces` (or switch it off under `platformServices`)"
            )
        if "webhook_ports" in self.model_fields_set:
            stray = [ns for ns in self.webhook_ports if ns not in self.protected_namespaces + services]
            if stray:
                raise ValueError(
                    f"`webhookPorts` names {', '.join(stray)}, which is neither in `protectedNamespaces` nor a "
                    "`platformServices` namespace; list only those (a namespace without policies needs no webhook allow)"
                )
        stray = [ref for ref in self.gateway_internet_egress if ref.partition("/")[0] not in self.protected_namespaces]
        if stray and "gateway_internet_egress" in self.model_fields_set:
            raise ValueError(
                f"`gatewayInternetEgress` names {', '.join(stray)}, whose namespace is not in `protectedNamespaces`; "
                "only the proxies of protected namespaces are egress-limited, so list only those"
            )
        if (self.benchmark_namespace is not None and self.benchmark_namespace not in self.protected_namespaces
                and "benchmark_namespace" in self.model_fields_set):
            raise ValueError(
                f"`benchmarkNamespace` {self.benchmark_namespace!r} is not in `protectedNamespaces`; name the protected "
                "namespace the benchmark Jobs run in (reference: serving) or set it to null"
            )
        if self.ports is not None:
            for ns in self.ports:
                if ns not in self.protected_namespaces:
                    raise ValueError(
                        f"`ports` scopes {ns!r}, which is not in `protectedNamespaces`; remove it or protect it"
                    )
            missing = [ns for ns in self.protected_namespaces if ns not in self.ports]
            if missing:
                raise ValueError(
                    f"`ports` scopes ports but does not list {', '.join(missing)}: a config that scopes ports "
                    "must list the container ports of every protected namespace (see the reference port set "
                    "in docs/sr1-network-policies.md), or remove `ports` to allow every port"
                )
        return self

    @property
    def protected_namespace_names(self) -> list[str]:
        """The protected namespaces (SR1's model-serving side)."""
        return list(self.protected_namespaces)

    @property
    def written_namespace_names(self) -> list[str]:
        """Every namespace SR1 writes NetworkPolicies into: the protected ones, then `litellm` / `monitoring`
        (``platformServices``); the stack creates or adopts them."""
        return list(self.protected_namespaces) + self.platform_services.namespaces


# ---------------------------------------------------------------- SR2


_SA_USER = re.compile(r"^system:serviceaccount:([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?):([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)$")
_RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")

# Operator namespaces a tenant may never be named after: a service account there could carry the
# user name of a trusted controller (require-kueue-queue-name trusts controllers by user name).
# The namespaces of every configured `kyverno.trustedControllers` identity are refused as well.
OPERATOR_NAMESPACES = frozenset(
    {"kuberay-system", "jobset-system", "lws-system", "kueue-system", "kubeflow", "kubeflow-system",
     "mpi-operator", "appwrapper-system"}
)


class TrustedControllers(_Model):
    """Request user names of the controllers the SR2 policy trusts to create children of Kueue workloads."""

    job: str = "system:serviceaccount:kube-system:job-controller"
    """kube-controller-manager's Job controller (Pods of a Job)."""
    cron_job: str = "system:serviceaccount:kube-system:cronjob-controller"
    """kube-controller-manager's CronJob controller (Jobs of a CronJob; they still need the queue label)."""
    replica_set: str = "system:serviceaccount:kube-system:replicaset-controller"
    """kube-controller-manager's ReplicaSet controller (Pods of a ReplicaSet; they still need the queue label)."""
    stateful_set: str = "system:serviceaccount:kube-system:statefulset-controller"
    """kube-controller-manager's StatefulSet controller (Pods of a StatefulSet)."""
    kueue: str = "system:serviceaccount:kueue-system:kueue-controller-manager"
    """Kueue's controller: the only identity that may lift the admission gate or unsuspend a top-level workload."""
    kuberay: str = "system:serviceaccount:kuberay-system:kuberay-operator"
    """KubeRay operator (RayCluster and submitter Job of a RayJob, Pods of a RayCluster)."""
    jobset: str = "system:serviceaccount:jobset-system:jobset-controller-manager"
    """JobSet controller (Jobs of a JobSet)."""
    lws: str = "system:serviceaccount:lws-system:lws-controller-manager"
    """LeaderWorkerSet controller (leader and worker StatefulSets)."""
    kubeflow_training: str = "system:serviceaccount:kubeflow:training-operator"
    """Kubeflow training-operator v1 (Pods of PyTorchJob, MPIJob v1, TFJob, XGBoostJob, PaddleJob, JAXJob)."""
    mpi_operator: str = "system:serviceaccount:mpi-operator:mpi-operator"
    """MPI operator v2 (launcher Job and worker Pods of an MPIJob v2beta1)."""
    trainer: str = "system:serviceaccount:kubeflow-system:kubeflow-trainer-controller-manager"
    """Kubeflow Trainer v2 (the JobSet of a TrainJob)."""
    appwrapper: str = "system:serviceaccount:appwrapper-system:appwrapper-controller-manager"
    """AppWrapper controller (the components of an AppWrapper)."""

    @field_validator("*")
    @classmethod
    def _sa(cls, v: str, info: ValidationInfo) -> str:
        if not _SA_USER.match(v):
            raise ValueError(
                f"{v!r} is not a service account user name; write it like "
                "system:serviceaccount:<namespace>:<service-account>"
            )
        return v

    def namespaces(self) -> set[str]:
        """Namespaces of all trusted identities."""
        return {m.group(1) for v in self.model_dump().values() if (m := _SA_USER.match(v))}


# Kueue's integration ("framework") names, as registered by Kueue 0.18.1 (pkg/controller/jobs/**
# `FrameworkName`), and the ones its Helm chart 0.18.1 enables (charts/kueue/values.yaml
# `managerConfig.controllerManagerConfigYaml` `integrations.frameworks`). Kueue 0.19 leaves the five
# training-operator v1 frameworks (paddlejob, pytorchjob, tfjob, xgboostjob, jaxjob) off.
KUEUE_VERSION = "0.18.1"
KUEUE_FRAMEWORKS = (
    "batch/job", "kubeflow.org/mpijob", "ray.io/rayjob", "ray.io/rayservice", "ray.io/raycluster",
    "jobset.x-k8s.io/jobset", "trainer.kubeflow.org/trainjob", "kubeflow.org/paddlejob",
    "kubeflow.org/pytorchjob", "kubeflow.org/tfjob", "kubeflow.org/xgboostjob", "kubeflow.org/jaxjob",
    "workload.codeflare.dev/appwrapper", "sparkoperator.k8s.io/sparkapplication", "pod", "deployment",
    "statefulset", "leaderworkerset.x-k8s.io/leaderworkerset",
)
KUEUE_DEFAULT_FRAMEWORKS = tuple(f for f in KUEUE_FRAMEWORKS if f != "sparkoperator.k8s.io/sparkapplication")
# Frameworks that switch `pod` on with them (Kueue `ImplicitlyEnabledFrameworkNames`).
KUEUE_IMPLIES_POD = ("deployment", "statefulset", "leaderworkerset.x-k8s.io/leaderworkerset")
_RESOURCE_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/([A-Za-z0-9][-A-Za-z0-9_.]*)?\*$")


class KueueConfig(_Model):
    """The Kueue installation SR2 relies on (the reference platform pins Kueue chart 0.18.1)."""

    frameworks: list[str] = Field(default_factory=lambda: list(KUEUE_DEFAULT_FRAMEWORKS))
    """Kueue integrations enabled in the cluster (Kueue's `integrations.frameworks`); default: those Kueue
    chart 0.18.1 enables. SR2 trusts only these as Kueue parents and denies accelerated objects of the others."""

    @field_validator("frameworks")
    @classmethod
    def _frameworks(cls, v: list[str]) -> list[str]:
        for f in v:
            if f not in KUEUE_FRAMEWORKS:
                raise ValueError(
                    f"{f!r} is not a Kueue {KUEUE_VERSION} framework; use Kueue's names: "
                    f"{', '.join(KUEUE_FRAMEWORKS)}"
                )
        return _no_duplicates(v, "framework")

    def enabled(self) -> set[str]:
        """The frameworks Kueue runs, with the ones it enables implicitly (`pod`)."""
        out = set(self.frameworks)
        if out & set(KUEUE_IMPLIES_POD):
            out.add("pod")
        return out


class KyvernoInstall(_Model):
    """How the Kyverno chart is installed. The defaults are the production install; the other values exist for
    `make e2e` (a local control plane without nodes, and no pulumi-command provider) and are refused on a
    stack that creates its cluster (dev, prod)."""

    chart_path: Optional[str] = None
    """A local directory holding Kyverno chart 3.8.1, installed instead of the chart repository's package."""
    skip_await: bool = False
    """Wait for nothing that needs a running pod: no Helm --wait, no `condition=Ready` wait on the policies
    (`pulumi.com/skipAwait`), and the chart's hook Jobs (pre-delete webhook cleanup, post-upgrade migration) off."""
    kubectl_commands: bool = True
    """Run the kubectl preflight (refuses a foreign Kyverno) and the destroy-time webhook cleanup (pulumi-command)."""

    @field_validator("chart_path")
    @classmethod
    def _chart_path(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not os.path.isabs(v):
            raise ValueError(f"{v!r} is not an absolute path; write the chart directory's absolute path")
        return v

    @property
    def is_default(self) -> bool:
        return self == KyvernoInstall()


class KyvernoConfig(_Model):
    """SR2 admission engine and policy (active with `security: true`)."""

    accelerator_resources: list[str] = Field(default_factory=lambda: ["nvidia.com/gpu", "google.com/tpu"])
    """Extended resources that only Kueue-admitted workloads may request (GKE: NVIDIA GPUs and TPUs); the guardrail catalog uses the same list."""
    accelerator_resource_patterns: list[str] = Field(
        default_factory=lambda: ["nvidia.com/gpu*", "nvidia.com/mig-*", "google.com/tpu*"])
    """SR2 only: resource-name prefixes ending in `*` that also count as accelerators (MIG profiles
    `nvidia.com/mig-1g.5gb`, time-sliced `nvidia.com/gpu.shared`, ...)."""
    kueue: KueueConfig = Field(default_factory=KueueConfig)
    """The Kueue installation the policy trusts (enabled frameworks)."""
    trusted_controllers: TrustedControllers = Field(default_factory=TrustedControllers)
    """Controller identities trusted to create children of Kueue workloads, and Kueue's own identity."""
    resource_claims_through_kueue: bool = False
    """DRA claims (`resourceClaims`) are admitted only with a queue label (Kueue configured for DRA); default: denied."""

    @field_validator("accelerator_resources")
    @classmethod
    def _accelerators(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("list at least one accelerator resource, e.g. nvidia.com/gpu")
        for r in v:
            if not _RESOURCE_NAME.match(r):
                raise ValueError(f"{r!r} is not an extended resource name; write it like nvidia.com/gpu")
        return _no_duplicates(v, "accelerator resource")

    @field_validator("accelerator_resource_patterns")
    @classmethod
    def _accelerator_patterns(cls, v: list[str]) -> list[str]:
        for r in v:
            if not _RESOURCE_PATTERN.match(r):
                raise ValueError(
                    f"{r!r} is not a resource-name pattern; write a prefix ending in one `*` after the "
                    "domain, like nvidia.com/mig-*"
                )
        return _no_duplicates(v, "accelerator resource pattern")

    failure_action: Literal["Enforce", "Audit"] = "Enforce"
    """Enforce rejects offending workloads; Audit only reports them."""
    admission_replicas: int = Field(3, ge=1, le=10)
    """Admission controller replicas; 3+ gives a PodDisruptionBudget and zone spread."""
    create_tenant_namespaces: bool = False
    """Create the tenant namespaces as Namespace resources, adopting those that exist (never deleted); false: patch
    the labels onto namespaces that must exist (`existingCluster` only)."""
    install: KyvernoInstall = Field(default_factory=KyvernoInstall)
    """How the chart is installed (defaults: the chart repository, with every wait; other values only for `make e2e`)."""


# ---------------------------------------------------------------- guardrail catalog

# Kubernetes allows an empty label value in a selector; InNamespaceClient's values (above) may not be empty.
_LABEL_VALUE_OR_EMPTY = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_MODEL = re.compile(r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*?(-v\*)?$")
_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9._-]+)*/?$")


def _labels(v: dict[str, str], what: str) -> dict[str, str]:
    for k, val in v.items():
        if not _LABEL_KEY.match(k):
            raise ValueError(f"{what} key {k!r} is not a valid label key")
        if not _LABEL_VALUE_OR_EMPTY.match(val):
            raise ValueError(f"{what} value {val!r} (key {k!r}) is not a valid label value")
    return v


class GuardrailPolicy(_Model):
    """Settings every validate policy of the catalog has: on/off, failure action, scope."""

    enabled: bool = True
    """Render this policy (when `guardrails.enabled`)."""
    failure_action: Literal["Audit", "Enforce"] = "Audit"
    """Audit first (reports only); Enforce rejects offending objects."""
    namespaces: Optional[list[str]] = None
    """Namespaces in scope; default `guardrails.namespaces`."""
    namespace_selector: dict[str, str] = Field(default_factory=dict)
    """Also require these namespace labels (matchLabels), e.g. `{purpose: ai-inference}`."""
    object_selector: dict[str, str] = Field(default_factory=dict)
    """Also require these labels on the admitted object itself (matchLabels), e.g. `{workload-type: inference}`."""

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, v: Optional[list[str]]) -> Optional[list[str]]:
        if v is None:
            return v
        if not v:
            raise ValueError("an empty namespace list matches nothing; remove the key or set enabled: false")
        for ns in v:
            _dns_label(ns, "namespace name")
        return _no_duplicates(v, "namespace")

    @field_validator("namespace_selector", "object_selector")
    @classmethod
    def _selectors(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return _labels(v, to_camel(info.field_name or ""))


class GpuCapPolicy(GuardrailPolicy):
    """1. At most N accelerators per Pod, per accelerator resource."""

    max_accelerators_per_pod: int = Field(4, ge=1, le=64)
    """Cap per Pod, summed over containers and initContainers; also the cap per DRA ResourceClaim (template)."""
    accelerator_device_classes: list[str] = Field(default_factory=lambda: ["gpu.nvidia.com", "mig.nvidia.com"])
    """DRA DeviceClasses that hand out accelerators (counted against the cap per claim)."""

    @field_validator("accelerator_device_classes")
    @classmethod
    def _device_classes(cls, v: list[str]) -> list[str]:
        for dc in v:
            if not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", dc):
                raise ValueError(f"device class {dc!r} is not a DeviceClass name (DNS subdomain), e.g. gpu.nvidia.com")
        return _no_duplicates(v, "device class")


class AcceleratorOvercommitPolicy(GuardrailPolicy):
    """2. Accelerator requests equal limits where both are set."""


class ApprovedModelsPolicy(GuardrailPolicy):
    """3. The model a server loads is on this list."""

    models: list[str] = Field(
        default_factory=lambda: ["meta-llama/llama-3.1-8b-instruct", "mistralai/mistral-7b-instruct-v*"]
    )
    """Approved `org/name` (matched exactly, case-insensitively); a trailing `-v*` admits numeric version suffixes."""

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        out = [m.strip().lower() for m in v]
        for m in out:
            if not _MODEL.match(m):
                raise ValueError(
                    f"model {m!r} is not `org/name` (optionally ending in `-v*` for version suffixes); "
                    "write it as on Hugging Face, e.g. meta-llama/llama-3.1-8b-instruct"
                )
        return _no_duplicates(out, "model")


class MemoryBoundsPolicy(GuardrailPolicy):
    """4. Pod memory request >= floor; every limits.memory <= ceiling."""

    request_floor: str = "2Gi"
    """Minimum memory request of a Pod (Kubernetes quantity)."""
    limit_ceiling: str = "256Gi"
    """Maximum limits.memory of any container (Kubernetes quantity)."""

    @field_validator("request_floor", "limit_ceiling")
    @classmethod
    def _quantity(cls, v: str, info: ValidationInfo) -> str:
        from components.quantity import QuantityError, parse_quantity

        try:
            if parse_quantity(v) <= 0:
                raise ValueError(f"{to_camel(info.field_name or '')} must be positive, got {v!r}")
        except QuantityError:
            raise ValueError(f"{v!r} is not a Kubernetes quantity; write it like 2Gi or 256Gi") from None
        return v

    @model_validator(mode="after")
    def _order(self) -> "MemoryBoundsPolicy":
        from components.quantity import parse_quantity

        if parse_quantity(self.request_floor) > parse_quantity(self.limit_ceiling):
            raise ValueError(f"requestFloor {self.request_floor} is above limitCeiling {self.limit_ceiling}")
        return self


# Pod Security Standards baseline: the only capabilities a container may add.
_BASELINE_CAPABILITIES = frozenset({"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                                    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
BASELINE_RULES = ("no-privilege-escalation", "no-host-namespaces", "run-as-non-root",
                  "seccomp-runtime-default", "drop-capabilities")


class BaselineException(_Model):
    """A PolicyException lifting some security-baseline rules for named objects in one namespace."""

    name: str
    """PolicyException name (created in the kyverno namespace)."""
    namespace: str
    """The one namespace the exempted objects live in."""
    names: list[str] = Field(min_length=1)
    """Object names (Kyverno wildcards allowed, e.g. `nim-llm-*` for its Pods)."""
    kinds: list[str] = Field(default_factory=lambda: ["Pod", "apps/v1/Deployment", "apps/v1/StatefulSet"])
    """Kinds the exception covers."""
    rules: list[Literal[BASELINE_RULES]] = Field(min_length=1)  # type: ignore[valid-type]
    """Security-baseline rules lifted (never the whole policy)."""

    @field_validator("name", "namespace")
    @classmethod
    def _dns(cls, v: str, info: ValidationInfo) -> str:
        return _dns_label(v, f"exception {info.field_name}")

    @field_validator("names")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for n in v:
            if n in ("*", "?") or not n.strip("*?"):
                raise ValueError(f"exception name {n!r} matches every object; name the objects")
        return v


def _default_exceptions() -> list[BaselineException]:
    return [
        # NVIDIA NIM containers run with the image's fixed UID/GID (NIM docs: run as that user); a
        # NIM deployed with runAsUser 0 for its cache volume would fail run-as-non-root only.
        BaselineException(name="guardrail-nvidia-nim", namespace="serving", names=["nim-llm", "nim-llm-*"],
                          rules=["run-as-non-root"]),
        # The NVIDIA device plugin (GPU Operator) runs privileged as root to expose the devices.
        BaselineException(
            name="guardrail-nvidia-device-plugin", namespace="gpu-operator",
            names=["nvidia-device-plugin-daemonset", "nvidia-device-plugin-daemonset-*"],
            kinds=["Pod", "apps/v1/DaemonSet"],
            rules=["no-privilege-escalation", "run-as-non-root", "drop-capabilities"],
        ),
    ]


class SecurityBaselinePolicy(GuardrailPolicy):
    """5. allowPrivilegeEscalation false, no host namespaces, runAsNonRoot, seccomp, drop ALL."""

    required_drop: Literal["ALL", "NET_RAW"] = "ALL"
    """Capability every container must drop: ALL, or NET_RAW as the minimum."""
    allowed_capabilities: list[str] = Field(default_factory=lambda: ["NET_BIND_SERVICE"])
    """Capabilities a container may add back (`capabilities.add`); at most Pod Security baseline's list."""
    exceptions: list[BaselineException] = Field(default_factory=_default_exceptions)
    """Known exceptions, each a PolicyException scoped by name and namespace."""

    @field_validator("exceptions")
    @classmethod
    def _unique(cls, v: list[BaselineException]) -> list[BaselineException]:
        _no_duplicates([e.name for e in v], "exception name")
        return v

    @field_validator("allowed_capabilities")
    @classmethod
    def _caps(cls, v: list[str]) -> list[str]:
        # Upper case without CAP_, as the runtime reads them; beyond Pod Security baseline's list is not a baseline.
        out = [c.strip().upper().removeprefix("CAP_") for c in v]
        for c in out:
            if c not in _BASELINE_CAPABILITIES:
                raise ValueError(f"capability {c!r} is not one Pod Security baseline allows adding; allowed: "
                                 + ", ".join(sorted(_BASELINE_CAPABILITIES)))
        return _no_duplicates(out, "capability")


class TrustedRegistriesPolicy(GuardrailPolicy):
    """6. Images only from these registry prefixes."""

    registries: list[str] = Field(
        default_factory=lambda: [
            "registry.k8s.io/",
            "nvcr.io/nvidia/",
            "docker.io/vllm/vllm-openai",
            "ghcr.io/huggingface/text-generation-inference",
            "ghcr.io/huggingface/text-embeddings-inference",
            "docker.io/nvidia/cuda",
        ]
    )
    """Prefixes after Docker normalisation; ending in `/`: everything below; otherwise: that repository only."""
    require_digest: bool = False
    """Also require every image to be pinned by @sha256 digest."""

    @field_validator("registries")
    @classmethod
    def _registries(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("an empty registry list rejects every image; list at least one prefix")
        for r in v:
            if not _REGISTRY.match(r) or "/" not in r.rstrip("/") and not r.endswith("/"):
                raise ValueError(
                    f"registry prefix {r!r} must be a host with an optional path, without scheme, "
                    "e.g. europe-docker.pkg.dev/my-project/ or docker.io/vllm/vllm-openai"
                )
        return _no_duplicates(v, "registry prefix")


class RequireLimitsPolicy(GuardrailPolicy):
    """7. CPU and memory limits on every container and initContainer."""

    require_cpu_limit: bool = True
    """Require limits.cpu too (limits.memory is always required)."""


class OwnershipPolicy(GuardrailPolicy):
    """8. owner / cost-center labels; model documentation annotations on inference workloads."""

    required_labels: list[str] = Field(default_factory=lambda: ["owner", "cost-center"])
    """Pod labels required for chargeback."""
    inference_labels: dict[str, str] = Field(default_factory=lambda: {"workload-type": "inference"})
    """Pod labels that mark an inference workload."""
    model_annotations: list[str] = Field(default_factory=lambda: ["ai/version", "ai/dataset"])
    """Annotations a model workload (a recognised model server, or a Pod with `inferenceLabels`) must carry."""
    version_annotation: str = "ai/version"
    """The one of `modelAnnotations` that holds the model version."""
    version_pattern: str = r"^v[0-9]+([.][0-9]+)*([-+][0-9A-Za-z.-]+)?$"
    """Regular expression (RE2, anchored) the version must match; default: the seed's `v*`, numeric, e.g. v1.2."""
    secret_name_patterns: list[str] = Field(default_factory=lambda: ["*-vault"])
    """Names (globs, `*` and `?`) every Secret a model workload references must match; default: Vault-synced."""
    stamp_owner: bool = False
    """Also render guardrail-stamp-owner: a mutate adding `owner` from the requesting user where missing."""

    @field_validator("version_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        # RE2 (CEL matches) has no lookaround or backreferences; anchors keep `v1-evil` from matching `^v1`.
        if not (v.startswith("^") and v.endswith("$")):
            raise ValueError(f"{v!r} must be anchored with ^ and $ (CEL matches() finds a match anywhere)")
        if re.search(r"\\[1-9]|\(\?[=!<]", v):
            raise ValueError(f"{v!r} uses lookaround or a backreference, which CEL (RE2) does not support")
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"{v!r} is not a regular expression ({e})") from None
        return v

    @field_validator("secret_name_patterns")
    @classmethod
    def _secret_globs(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("an empty list refuses every Secret; list at least one pattern, e.g. *-vault")
        for g in v:
            if not re.match(r"^[a-z0-9.*?-]+$", g) or not g.strip("*?"):
                raise ValueError(f"{g!r} is not a Secret name glob (lowercase letters, digits, '-', '.', '*', '?'; "
                                 "not only wildcards)")
        return _no_duplicates(v, "pattern")

    @model_validator(mode="after")
    def _version_is_a_model_annotation(self) -> "OwnershipPolicy":
        if self.version_annotation not in self.model_annotations:
            raise ValueError(f"versionAnnotation {self.version_annotation!r} is not one of modelAnnotations")
        return self

    @field_validator("required_labels", "model_annotations")
    @classmethod
    def _keys(cls, v: list[str], info: ValidationInfo) -> list[str]:
        _labels({k: "" for k in v}, to_camel(info.field_name or ""))
        return _no_duplicates(v, "key")

    @field_validator("inference_labels")
    @classmethod
    def _inference(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("inferenceLabels is empty: no workload would count as inference")
        return _labels(v, "inferenceLabels")


class ReserveAcceleratorNodesPolicy(GuardrailPolicy):
    """9. Only these service accounts may run Pods that can land on accelerator nodes (every namespace)."""

    namespaces: Optional[list[str]] = None
    """Namespaces in scope; default: every namespace but `excludeNamespaces` (not `guardrails.namespaces`)."""
    allowed_service_accounts: list[str] = Field(default_factory=list)
    """`namespace/name` of each approved service account."""
    exclude_namespaces: list[str] = Field(
        default_factory=lambda: ["kube-system", "kube-public", "kube-node-lease", "kyverno", "gmp-system"])
    """Namespaces left out. The scope is every namespace (nodes are shared) unless `namespaces` is set."""

    @field_validator("exclude_namespaces")
    @classmethod
    def _excluded(cls, v: list[str]) -> list[str]:
        for ns in v:
            _dns_label(ns, "namespace name")
        return _no_duplicates(v, "namespace")

    @field_validator("allowed_service_accounts")
    @classmethod
    def _sas(cls, v: list[str]) -> list[str]:
        for sa in v:
            ns, sep, name = sa.partition("/")
            if not sep or not _DNS_LABEL.match(ns) or not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", name):
                raise ValueError(f"service account {sa!r} must be written namespace/name, e.g. serving/vllm")
        return _no_duplicates(v, "service account")


class EgressDestination(_Model):
    """One extra egress destination of the lockdown NetworkPolicy: a CIDR, or in-cluster Pods by label."""

    cidr: Optional[str] = None
    """IPv4 CIDR (outside the cluster: Pod IPs change, select in-cluster Pods by label instead)."""
    namespace_selector: dict[str, str] = Field(default_factory=dict)
    """Namespaces by label (matchLabels), e.g. `{kubernetes.io/metadata.name: litellm}`."""
    pod_selector: dict[str, str] = Field(default_factory=dict)
    """Pods by label (matchLabels); with no namespaceSelector, Pods of the locked namespace itself."""
    ports: list[int] = Field(min_length=1)
    """Ports."""
    protocol: Literal["TCP", "UDP"] = "TCP"
    """Protocol."""

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        try:
            return str(ipaddress.IPv4Network(v, strict=True))
        except ValueError as e:
            raise ValueError(f"{v!r} is not an IPv4 CIDR ({e})") from e

    @field_validator("namespace_selector", "pod_selector")
    @classmethod
    def _peer_labels(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return _labels(v, to_camel(info.field_name or ""))

    @model_validator(mode="after")
    def _one_kind_of_peer(self) -> "EgressDestination":
        peer = bool(self.namespace_selector or self.pod_selector)
        if (self.cidr is None) == (not peer):
            raise ValueError("give either cidr or namespaceSelector/podSelector (one kind of peer per destination), "
                             "e.g. {namespaceSelector: {kubernetes.io/metadata.name: litellm}, podSelector: "
                             "{app.kubernetes.io/name: litellm}, ports: [4000]}")
        return self

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        return _ports(v, "egress")


class EgressLockdownPolicy(_Model):
    """10. Generated, synchronized NetworkPolicy: DNS plus configured destinations only."""

    enabled: bool = True
    """Render this policy (when `guardrails.enabled`)."""
    namespace_selector: dict[str, str] = Field(default_factory=lambda: {"llm-platform/egress-lockdown": "true"})
    """Namespaces (by label) that get the lockdown NetworkPolicy."""
    node_local_dns: Optional[str] = None
    """NodeLocal DNSCache address when the cluster uses it (GKE: 169.254.20.10)."""
    cloud_dns: bool = False
    """The cluster uses Cloud DNS for GKE: also allow its metadata-server resolver 169.254.169.254 on 53."""
    allowed_egress: list[EgressDestination] = Field(default_factory=list)
    """Destinations allowed besides DNS."""

    @field_validator("namespace_selector")
    @classmethod
    def _sel(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("namespaceSelector is empty: it would lock down every namespace; name a label")
        return _labels(v, "namespaceSelector")

    @field_validator("node_local_dns")
    @classmethod
    def _ip(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        try:
            return str(ipaddress.IPv4Address(v))
        except ValueError as e:
            raise ValueError(f"{v!r} is not an IPv4 address ({e}); GKE's NodeLocal DNSCache is 169.254.20.10") from e


class GuardrailsConfig(_Model):
    """The guardrail catalog (policies/kyverno/guardrail-*), active with `security: true` and `enabled`."""

    enabled: bool = False
    """Render the catalog (each policy can still be switched off)."""
    namespaces: Optional[list[str]] = None
    """Default scope of every validate policy; default: `serving`, the protected namespaces and the tenants."""
    gpu_cap_per_pod: GpuCapPolicy = Field(default_factory=GpuCapPolicy)
    """1. GPU cap per Pod."""
    accelerator_overcommit: AcceleratorOvercommitPolicy = Field(default_factory=AcceleratorOvercommitPolicy)
    """2. No accelerator overcommit."""
    approved_models: ApprovedModelsPolicy = Field(default_factory=ApprovedModelsPolicy)
    """3. Approved models."""
    memory_bounds: MemoryBoundsPolicy = Field(default_factory=MemoryBoundsPolicy)
    """4. Memory bounds."""
    security_baseline: SecurityBaselinePolicy = Field(default_factory=SecurityBaselinePolicy)
    """5. Security baseline."""
    trusted_registries: TrustedRegistriesPolicy = Field(default_factory=TrustedRegistriesPolicy)
    """6. Trusted registries."""
    require_limits: RequireLimitsPolicy = Field(default_factory=RequireLimitsPolicy)
    """7. CPU/memory limits required."""
    ownership: OwnershipPolicy = Field(default_factory=OwnershipPolicy)
    """8. Ownership labels and model documentation."""
    reserve_accelerator_nodes: ReserveAcceleratorNodesPolicy = Field(default_factory=ReserveAcceleratorNodesPolicy)
    """9. Accelerator nodes reserved for approved service accounts."""
    egress_lockdown: EgressLockdownPolicy = Field(default_factory=EgressLockdownPolicy)
    """10. Egress lockdown for AI namespaces (generate)."""

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, v: Optional[list[str]]) -> Optional[list[str]]:
        if v is None:
            return v
        if not v:
            raise ValueError("an empty namespace list matches nothing; remove the key to use serving + tenants")
        for ns in v:
            _dns_label(ns, "namespace name")
        return _no_duplicates(v, "namespace")


# ---------------------------------------------------------------- Pod Security (tenants)

# Pod Security Standards version pinned on tenant namespaces (`enforce-version`, `warn-version`,
# `audit-version`). It is the Kubernetes minor the project validates against (kubernetes-validate
# 1.33 schemas) and the newest version `tools/pod_security.py` implements check by check; bump both
# together when the clusters move to a newer minor.
POD_SECURITY_VERSION = "v1.33"


class PodSecurityConfig(_Model):
    """Pod Security Admission on tenant namespaces (active with `security: true`)."""

    enforce: Literal["baseline", "restricted"] = "baseline"
    """Level the API server enforces on tenant Pods; warn and audit are always `restricted`."""


# ---------------------------------------------------------------- workload isolation (issue 12)


class AgentPodSecurityConfig(PodSecurityConfig):
    """Pod Security Admission on agent namespaces (with `agentIsolation.enabled`)."""

    enforce: Literal["baseline", "restricted"] = "restricted"
    """Level the API server enforces on agent Pods (GKE Sandbox runs `restricted` Pods); warn and audit are
    always `restricted`."""


def _cidr_list(v: list[str]) -> list[str]:
    out = []
    for c in v:
        try:
            out.append(str(ipaddress.IPv4Network(c, strict=True)))
        except ValueError as e:
            raise ValueError(f"{c!r} is not an IPv4 CIDR ({e})") from e
    return _no_duplicates(out, "CIDR")


class ClusterDns(_Model):
    """How pods resolve names; the egress-locked policies open exactly these DNS paths."""

    node_local_dns_cache: bool = False
    """The cluster runs NodeLocal DNSCache (pods query 169.254.20.10:53)."""
    cloud_dns: bool = False
    """The cluster uses Cloud DNS for GKE (pods query the metadata server 169.254.169.254:53)."""


class GatewayTarget(_Model):
    """A namespace (and its container ports) that agents may call."""

    namespace: str
    """Namespace of the model gateway (selected by its immutable name label)."""
    ports: list[int] = Field(min_length=1)
    """Container ports of the gateway pods (Dataplane V2 sees the target port, not the Service port)."""

    @field_validator("namespace")
    @classmethod
    def _ns(cls, v: str) -> str:
        return _dns_label(v, "namespace name")

    @field_validator("ports")
    @classmethod
    def _p(cls, v: list[int]) -> list[int]:
        return _ports(v, "gateway")


class AgentIsolationConfig(_Model):
    """Capability A: agent workloads under GKE Sandbox with a locked-down network (needs `security: true`)."""

    enabled: bool = False
    """Turn agent isolation on (Kyverno policy + NetworkPolicies in `namespaces`)."""
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces that hold agent workloads (tool-using agents, code runners)."""
    model_gateways: list[GatewayTarget] = Field(
        default_factory=lambda: [GatewayTarget(namespace=LITELLM_NAMESPACE, ports=[LITELLM_PORT])]
    )
    """Where agents may send model traffic: LiteLLM (4000) by default; add agentgateway here."""
    telemetry_namespace: str = MONITORING_NAMESPACE
    """Namespace of the OpenTelemetry collector agents export to (OTLP gRPC 4317, HTTP 4318)."""
    telemetry_ports: list[int] = Field(default_factory=lambda: list(OTLP_PORTS))
    """OTLP container ports of the collector."""
    pod_security: AgentPodSecurityConfig = Field(default_factory=lambda: AgentPodSecurityConfig())
    """Pod Security Admission level enforced on the agent namespaces: `restricted` (default; GKE Sandbox
    runs restricted Pods, docs/workload-isolation.md) or `baseline` for agent images that must run as root."""

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, v: list[str]) -> list[str]:
        for ns in v:
            _dns_label(ns, "namespace name")
            if ns in PLATFORM_NAMESPACES:
                raise ValueError(
                    f"agent namespace {ns!r} is a platform namespace; agents need their own namespace(s), e.g. `agents`"
                )
        return _no_duplicates(v, "agent namespace")

    @field_validator("telemetry_namespace")
    @classmethod
    def _telemetry(cls, v: str) -> str:
        return _dns_label(v, "namespace name")

    @field_validator("telemetry_ports")
    @classmethod
    def _tports(cls, v: list[int]) -> list[int]:
        return _ports(v, "telemetry")

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


class GatewayRef(_Model):
    """A Gateway of the platform, by namespace and name."""

    namespace: str
    """Namespace of the Gateway."""
    name: str
    """Name of the Gateway (`metadata.name`)."""

    @field_validator("namespace")
    @classmethod
    def _ns(cls, v: str) -> str:
        return _dns_label(v, "namespace name")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", v):
            raise ValueError(f"{v!r} is not a Gateway name (lowercase DNS subdomain, e.g. inference-gateway)")
        return v


# Identities that may always write NetworkPolicies in agent and egress-locked namespaces: Kyverno's
# background controller (the egress-lockdown generate rule), the namespace controller and garbage
# collector (deleting a namespace or an owner), and the API server's superuser group.
BUILTIN_NETWORK_POLICY_WRITERS = (
    "system:serviceaccount:kyverno:kyverno-background-controller",
    "system:serviceaccount:kube-system:namespace-controller",
    "system:serviceaccount:kube-system:generic-garbage-collector",
)
BUILTIN_NETWORK_POLICY_WRITER_GROUPS = ("system:masters",)


class TenantBoundariesConfig(_Model):
    """Admission rules that keep tenants from undoing the platform's isolation (active with `security: true`):
    NetworkPolicy writes in agent and egress-locked namespaces, and routes to the platform's shared Gateways."""

    network_policy_writers: list[str] = Field(default_factory=list)
    """Request user names that may create, change or delete NetworkPolicies in the agent and egress-locked
    namespaces, besides Kyverno's background controller, the namespace controller, the garbage collector and
    the group `system:masters`: the stack's deployer and its preview identity (on GKE a Google service
    account's user name is its e-mail, e.g. `pulumi-dev-deployer@llm-platform-dev.iam.gserviceaccount.com`)."""
    platform_gateways: list[GatewayRef] = Field(
        default_factory=lambda: [GatewayRef(namespace=ns, name=n) for ns, n in PLATFORM_GATEWAYS])
    """Shared Gateways only the platform's routes may attach to: `inference-gateway` and
    `kserve-ingress-gateway` by default."""
    route_namespaces: list[str] = Field(default_factory=lambda: list(PLATFORM_ROUTE_NAMESPACES))
    """Namespaces, besides `networkPolicy.protectedNamespaces`, whose routes may attach to the platform
    Gateways (default: `agentgateway-system`, home of the external-model route)."""

    @field_validator("network_policy_writers")
    @classmethod
    def _writers(cls, v: list[str]) -> list[str]:
        for u in v:
            if not u or u != u.strip() or u.startswith("system:anonymous") or u == "system:unauthenticated":
                raise ValueError(f"{u!r} is not a user name to trust; list the deployer's user name, e.g. "
                                 "pulumi-dev-deployer@llm-platform-dev.iam.gserviceaccount.com")
            if u.startswith("system:serviceaccount:") and not _SA_USER.match(u):
                raise ValueError(f"{u!r} is not a service account user name; write it like "
                                 "system:serviceaccount:<namespace>:<service-account>")
        return _no_duplicates(v, "NetworkPolicy writer")

    @field_validator("platform_gateways")
    @classmethod
    def _gateways(cls, v: list[GatewayRef]) -> list[GatewayRef]:
        if not v:
            raise ValueError("list the platform's shared Gateways (default: inference/inference-gateway, "
                             "kserve/kserve-ingress-gateway); an empty list leaves them open to tenant routes")
        return _no_duplicates(v, "platform Gateway")

    @field_validator("route_namespaces")
    @classmethod
    def _route_ns(cls, v: list[str]) -> list[str]:
        for ns in v:
            _dns_label(ns, "namespace name")
        return _no_duplicates(v, "route namespace")


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
        _benchmark_client(),
    ]


class ServingEgressConfig(_Model):
    """Capability B: the egress-locked model-serving profile (needs `security: true`)."""

    namespaces: list[str] = Field(default_factory=list)
    """Protected namespaces that also get default-deny egress (empty = off)."""
    model_hub_egress: Literal["none", "internet-443", "fqdn"] = "none"
    """HTTPS to model hubs: none; `internet-443` (0.0.0.0/0 minus private ranges on 443); or `fqdn`
    (GKE FQDNNetworkPolicy for `modelHubFqdns`, needs `cluster.fqdnNetworkPolicy`)."""
    model_hub_fqdns: list[str] = Field(default_factory=lambda: ["huggingface.co", "*.huggingface.co", "*.hf.co", "*.xethub.hf.co"])
    """Names (`huggingface.co`) or patterns (`*.hf.co`) allowed on 443 with `modelHubEgress: fqdn`."""
    api_server_cidrs: list[str] = Field(default_factory=list)
    """Kubernetes API server endpoint CIDRs (443); default: `cluster.controlPlaneCidr` of a private cluster."""
    api_server_clients: list[InNamespaceClient] = Field(default_factory=_default_api_server_clients)
    """Pods (by label, in the locked namespace) that may reach the API server."""
    model_hub_clients: list[InNamespaceClient] = Field(default_factory=_default_model_hub_clients)
    """Pods (by label, in the locked namespace) that `modelHubEgress` applies to: those that download models
    or tokenizers (default: the reference's vLLM and TEI servers and the benchmark Jobs)."""
    metadata_clients: list[InNamespaceClient] = Field(default_factory=list)
    """Pods (by label, in the locked namespace) that may use the metadata server (Workload Identity); default
    none: no reference serving pod calls Google APIs (add e.g. a KServe storage initializer reading gs://)."""

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, v: list[str]) -> list[str]:
        for ns in v:
            _dns_label(ns, "namespace name")
        return _no_duplicates(v, "namespace")

    @field_validator("api_server_cidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        return _cidr_list(v)

    @field_validator("model_hub_fqdns")
    @classmethod
    def _fqdns(cls, v: list[str]) -> list[str]:
        for name in v:
            bare = name[2:] if name.startswith("*.") else name
            if not bare or not all(_DNS_LABEL.match(part) for part in bare.split(".")) or "." not in bare:
                raise ValueError(f"{name!r} is not a DNS name or `*.`-pattern (e.g. huggingface.co, *.hf.co)")
        return _no_duplicates(v, "FQDN")

    @field_validator("model_hub_clients", "metadata_clients")
    @classmethod
    def _client_names(cls, v: list[InNamespaceClient]) -> list[InNamespaceClient]:
        _no_duplicates([c.name for c in v], "client name")
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


class NetworkPolicyLoggingConfig(_Model):
    """Capability C: GKE network policy logging (the cluster's `NetworkLogging` object `default`)."""

    denied: bool = False
    """Log connections denied by a NetworkPolicy to Cloud Logging."""
    allowed: bool = False
    """Also log allowed connections (verbose)."""

    @property
    def enabled(self) -> bool:
        return self.denied or self.allowed


# ---------------------------------------------------------------- stack


class StackConfig(_Model):
    """Everything one stack (dev, prod) is configured with."""

    gcp_project: Optional[str] = Field(None, alias="gcp:project")
    """Google Cloud project (`gcp:project`), required when the stack creates a cluster."""
    security: bool = False
    """Switch for the security capability group: SR1 NetworkPolicies, SR2 Kyverno, the tenant namespaces' labels, the
    guardrail catalog and workload isolation; `false` registers none of it."""
    tenants: list[str] = Field(default_factory=list)
    """Tenant namespaces (DNS-1123 labels)."""
    cluster: Optional[ClusterConfig] = None
    """A cluster this stack creates."""
    existing_cluster: Optional[ExistingCluster] = None
    """Or: a cluster someone else manages."""
    network_policy: NetworkPolicyConfig = Field(default_factory=NetworkPolicyConfig)
    """SR1 settings."""
    kyverno: KyvernoConfig = Field(default_factory=KyvernoConfig)
    """SR2 settings."""
    pod_security: PodSecurityConfig = Field(default_factory=PodSecurityConfig)
    """Pod Security Admission levels on tenant namespaces."""
    guardrails: GuardrailsConfig = Field(default_factory=GuardrailsConfig)
    """Guardrail catalog (Kyverno cost and security policies for LLM workloads), behind `security`."""
    cluster_dns: ClusterDns = Field(default_factory=ClusterDns)
    """DNS paths of the cluster (NodeLocal DNSCache, Cloud DNS) for the egress-locked policies."""
    agent_isolation: AgentIsolationConfig = Field(default_factory=AgentIsolationConfig)
    """Agent runtime isolation (GKE Sandbox, admission, network); off by default."""
    serving_egress: ServingEgressConfig = Field(default_factory=ServingEgressConfig)
    """Egress-locked model-serving profile; off by default."""
    network_policy_logging: NetworkPolicyLoggingConfig = Field(default_factory=NetworkPolicyLoggingConfig)
    """Dataplane V2 network policy logging; off by default."""
    tenant_boundaries: TenantBoundariesConfig = Field(default_factory=TenantBoundariesConfig)
    """Who may write NetworkPolicies in agent/egress-locked namespaces; the Gateways tenant routes may not use."""

    @field_validator("tenants")
    @classmethod
    def _tenants(cls, v: list[str]) -> list[str]:
        for t in v:
            _dns_label(t, "tenant namespace name")
            if t in PLATFORM_NAMESPACES:
                raise ValueError(
                    f"tenant {t!r} is a platform namespace; tenants must be separate namespaces "
                    f"(platform: {', '.join(sorted(PLATFORM_NAMESPACES))})"
                )
        return _no_duplicates(v, "tenant")

    @model_validator(mode="after")
    def _tenants_not_trusted(self) -> "StackConfig":
        np = self.network_policy
        for t in self.tenants:
            if t in np.protected_namespaces or t in np.allowed_from:
                raise ValueError(
                    f"tenant {t!r} is also listed in networkPolicy.protectedNamespaces/allowedFrom; a tenant "
                    "namespace must be neither protected nor trusted by SR1: rename the tenant or fix the list"
                )
        return self

    @model_validator(mode="after")
    def _tenant_boundaries(self) -> "StackConfig":
        tb = self.tenant_boundaries
        workloads = {*self.tenants, *self.agent_isolation.namespaces}
        for i, ns in enumerate(tb.route_namespaces):
            if ns in workloads:
                raise ValueError(
                    f"`tenantBoundaries.routeNamespaces[{i}]` ({ns!r}) is a tenant or agent namespace: its routes "
                    "could take the platform Gateways' traffic; list platform namespaces only")
        for i, user in enumerate(tb.network_policy_writers):
            m = _SA_USER.match(user)
            if m and m.group(1) in workloads:
                raise ValueError(
                    f"`tenantBoundaries.networkPolicyWriters[{i}]` ({user!r}) is a service account in a tenant or "
                    "agent namespace, which could rewrite its own egress rules; name the platform's deployer")
        return self

    @model_validator(mode="after")
    def _reserved_tenants(self) -> "StackConfig":
        reserved = OPERATOR_NAMESPACES | self.kyverno.trusted_controllers.namespaces()
        for i, t in enumerate(self.tenants):
            if t in reserved:
                raise ValueError(
                    f"`tenants[{i}]` ({t!r}) is an operator namespace: a service account there could "
                    "pass as a controller the SR2 policy trusts; choose another tenant name "
                    f"(reserved: {', '.join(sorted(reserved))})"
                )
        return self

    @model_validator(mode="after")
    def _install_for_e2e_only(self) -> "StackConfig":
        if self.cluster is not None and not self.kyverno.install.is_default:
            raise ValueError(
                "kyverno.install is set but this stack creates a GKE cluster: chartPath, skipAwait and "
                "kubectlCommands exist for `make e2e` (a control plane without nodes); remove kyverno.install"
            )
        return self

    @model_validator(mode="after")
    def _target(self) -> "StackConfig":
        if (self.cluster is None) == (self.existing_cluster is None):
            raise ValueError(
                "set exactly one of `cluster` (this stack creates a GKE cluster) or "
                "`existingCluster` (deploy into a cluster someone else manages)"
            )
        if self.cluster is not None and not self.gcp_project:
            raise ValueError("`cluster` needs `gcp:project`: run `pulumi config set gcp:project <id>`")
        if self.cluster is not None and self.security and self.tenants and not self.kyverno.create_tenant_namespaces:
            raise ValueError(
                "kyverno.createTenantNamespaces is false but this stack creates the cluster: the tenant "
                "namespaces cannot exist before its first `pulumi up`, so there is nothing to label; set "
                "kyverno.createTenantNamespaces: true (existing ones are adopted, none is ever deleted)"
            )
        if self.security and self.existing_cluster and not self.existing_cluster.network_policy_enforced:
            raise ValueError(
                "security is true but existingCluster.networkPolicyEnforced is false: the "
                "NetworkPolicies would be authored but not enforced; enable enforcement on the "
                "cluster (Dataplane V2 or Calico) and set it true, or turn security off"
            )
        _isolation_rules(self)
        return self


def _isolation_rules(self: "StackConfig") -> None:
    """Impossible combinations of the workload-isolation capabilities (issue 12)."""
    ai, se = self.agent_isolation, self.serving_egress
    # Both are part of the security group: with `security: false` they are inactive (the master switch
    # removes everything), so only an active capability can be an impossible combination.
    if not self.security:
        return
    # One DNS truth: the guardrail catalog's egress lockdown carries the same two facts.
    if (ai.enabled or se.enabled) and self.guardrails.enabled and self.guardrails.egress_lockdown.enabled:
        el, dns = self.guardrails.egress_lockdown, self.cluster_dns
        if (el.node_local_dns is not None) != dns.node_local_dns_cache or el.cloud_dns != dns.cloud_dns:
            raise ValueError(
                "clusterDns and guardrails.egressLockdown disagree about the cluster's DNS (NodeLocal DNSCache: "
                f"{dns.node_local_dns_cache} vs {el.node_local_dns is not None}; Cloud DNS: {dns.cloud_dns} vs "
                f"{el.cloud_dns}): set both to what the cluster uses"
            )
    if ai.enabled:
        if self.cluster is not None and not self.cluster.sandbox_pools:
            raise ValueError(
                "agentIsolation.enabled needs a GKE Sandbox node pool (the RuntimeClass `gvisor` exists only then): "
                "add a pool with `sandbox: true` to cluster.nodePools, or turn agent isolation off"
            )
        if self.existing_cluster is not None and not self.existing_cluster.gke_sandbox:
            raise ValueError(
                "agentIsolation.enabled needs a GKE Sandbox node pool: set existingCluster.gkeSandbox: true once the "
                "cluster has one (RuntimeClass `gvisor`), or turn agent isolation off"
            )
        trusted = set(self.network_policy.protected_namespaces) | set(self.network_policy.allowed_from)
        clash = [ns for ns in ai.namespaces if ns in trusted]
        if clash:
            raise ValueError(
                f"agentIsolation.namespaces {', '.join(clash)} is protected or trusted by SR1 "
                "(networkPolicy.protectedNamespaces/allowedFrom); agents must run in namespaces of their own"
            )
    if se.enabled:
        stray = [ns for ns in se.namespaces if ns not in self.network_policy.protected_namespaces]
        if stray:
            raise ValueError(
                f"servingEgress.namespaces names {', '.join(stray)}, which is not in networkPolicy.protectedNamespaces: "
                "the profile adds egress locking to a protected namespace (its ingress side is SR1); protect it first"
            )
        if se.model_hub_egress == "fqdn" and not (self.cluster is not None and self.cluster.fqdn_network_policy):
            raise ValueError(
                "servingEgress.modelHubEgress is `fqdn` but the cluster does not enable FQDN network policy: set "
                "cluster.fqdnNetworkPolicy: true (a cluster this stack creates), or use `internet-443` / `none`"
            )


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _raw_value(text: str) -> Any:
    # Pulumi passes objects, arrays, booleans and numbers as JSON text, strings as-is.
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text


def parse(raw: Mapping[str, str], stack: str = "") -> StackConfig:
    """Validate raw Pulumi config (``"llm-platform:key" -> text``) into a :class:`StackConfig`."""
    values: dict[str, Any] = {}
    for full_key, text in raw.items():
        ns, _, key = full_key.partition(":")
        if ns == PROJECT:
            values[key] = _raw_value(text)
        elif full_key == "gcp:project":
            values["gcp:project"] = text
    where = f"Pulumi.{stack}.yaml" if stack else "stack config"
    try:
        return StackConfig.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _loc(err["loc"])
        key = f"{PROJECT}:{loc}" if loc and loc != "gcp:project" else (loc or PROJECT)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo?); see docs/config.md for valid keys"
        elif err["type"] == "missing":
            msg = "required key is missing; add it"
        elif err["type"] != "value_error":
            msg = f"{msg} (got {err['input']!r})"
        more = f" ({exc.error_count() - 1} more problem(s) after fixing this one)" if exc.error_count() > 1 else ""
        raise ConfigError(f"invalid config in {where}: `{key}`: {msg}{more}") from None


def load() -> StackConfig:
    """Read this stack's Pulumi config once and validate it."""
    import pulumi
    from pulumi.runtime.config import CONFIG, get_config_env

    # The engine hands config over either as PULUMI_CONFIG or through set_all_config.
    return parse({**get_config_env(), **CONFIG.get()}, pulumi.get_stack())
