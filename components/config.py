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
from typing import Any, Literal, Mapping, Optional

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

PROJECT = "llm-platform"

# Namespaces the platform itself owns; a tenant may not take one of these names.
PLATFORM_NAMESPACES = frozenset(
    {
        "serving",
        "inference",
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


def _no_duplicates(values: list[str], what: str) -> list[str]:
    seen: set[str] = set()
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
    """GKE deletion protection and Pulumi `protect` on the cluster."""
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
    """Path to the kubeconfig file; default: $KUBECONFIG or ~/.kube/config."""
    network_policy_enforced: bool
    """Required: does the cluster enforce NetworkPolicy (Dataplane V2, Calico, ...)?"""

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


class Ports(_Model):
    """TCP ports each allow-list rule opens (container ports, after Service translation)."""

    model_server: list[int] = Field(default_factory=lambda: [8000])
    """Model server HTTP port (vLLM default 8000; also serves /metrics)."""
    gateway: list[int] = Field(default_factory=lambda: [80, 8080])
    """Inference gateway proxy listener ports in `inference`."""
    endpoint_picker: list[int] = Field(default_factory=lambda: [9002])
    """Endpoint picker ext-proc gRPC port."""
    serving_metrics: list[int] = Field(default_factory=lambda: [8000])
    """Metrics ports scraped in `serving`."""
    inference_metrics: list[int] = Field(default_factory=lambda: [9090, 15020])
    """Metrics ports scraped in `inference` (endpoint picker 9090, gateway proxy 15020)."""

    @field_validator("*")
    @classmethod
    def _range(cls, v: list[int], info: ValidationInfo) -> list[int]:
        return _ports(v, to_camel(info.field_name))


class NetworkPolicyConfig(_Model):
    """SR1 NetworkPolicies in `serving` and `inference` (active with `security: true`)."""

    serving_allowed_from: list[str] = Field(
        default_factory=lambda: ["litellm", "inference", "agentgateway-system", "monitoring"]
    )
    """Namespaces that may reach the model servers (monitoring: metrics ports only)."""
    inference_allowed_from: list[str] = Field(
        default_factory=lambda: ["litellm", "agentgateway-system", "monitoring"]
    )
    """Namespaces that may reach the inference gateway and endpoint picker."""
    monitoring_namespace: str = "monitoring"
    """The namespace whose allow is limited to metrics ports."""
    ports: Ports = Field(default_factory=Ports)
    """Ports per allow rule."""
    managed_prometheus: bool = False
    """Also allow GKE Managed Prometheus (`gmp-system`) to the metrics ports."""
    gke_l7_proxy_ranges: list[str] = Field(default_factory=list)
    """CIDRs of a GKE-managed Gateway's proxies (proxy-only subnet, 35.191.0.0/16, 130.211.0.0/22) to the gateway ports."""
    intra_serving: bool = False
    """Allow pod-to-pod traffic inside `serving` (multi-node engines: LeaderWorkerSet, Ray)."""

    @field_validator("serving_allowed_from", "inference_allowed_from")
    @classmethod
    def _namespaces(cls, v: list[str]) -> list[str]:
        for ns in v:
            _dns_label(ns, "namespace name")
        return _no_duplicates(v, "namespace")

    @field_validator("gke_l7_proxy_ranges")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        out = []
        for c in v:
            try:
                out.append(str(ipaddress.IPv4Network(c, strict=True)))
            except ValueError as e:
                raise ValueError(f"{c!r} is not an IPv4 CIDR ({e})") from e
        return _no_duplicates(out, "CIDR")


# ---------------------------------------------------------------- SR2


class KyvernoConfig(_Model):
    """SR2 admission engine and policy (active with `security: true`)."""

    failure_action: Literal["Enforce", "Audit"] = "Enforce"
    """Enforce rejects offending workloads; Audit only reports them."""
    admission_replicas: int = Field(3, ge=1, le=10)
    """Admission controller replicas; 3+ gives a PodDisruptionBudget and zone spread."""
    create_tenant_namespaces: bool = False
    """Create tenant namespaces that do not exist yet (default: only label existing ones)."""


# ---------------------------------------------------------------- stack


class StackConfig(_Model):
    """Everything one stack (dev, prod) is configured with."""

    gcp_project: Optional[str] = Field(None, alias="gcp:project")
    """Google Cloud project (`gcp:project`), required when the stack creates a cluster."""
    security: bool = False
    """Switch for the security capability group (SR1 NetworkPolicies, SR2 Kyverno)."""
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
        return self


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
            msg = "unknown key (typo?); see the config reference in README.md for valid keys"
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
