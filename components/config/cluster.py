"""The cluster a stack creates (`cluster`) or deploys into (`existingCluster`), and its DNS paths (`clusterDns`)."""

from __future__ import annotations

import ipaddress
import os
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from components.config.base import REGION, SA_EMAIL, ZONE, ConfigModel, dns_label, ipv4_cidr, no_duplicates


class Gpu(ConfigModel):
    """GPUs attached to every node of a pool."""

    type: str
    """Accelerator type, e.g. ``nvidia-l4``, ``nvidia-h100-80gb``."""
    count: int = Field(ge=1, le=16)
    """GPUs per node (1-16)."""
    driver_version: Literal["DEFAULT", "LATEST", "INSTALLATION_DISABLED"] = "DEFAULT"
    """GKE-managed NVIDIA driver installation; INSTALLATION_DISABLED leaves it to you."""


class NodePool(ConfigModel):
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
            if not ZONE.fullmatch(z):
                raise ValueError(f"{z!r} is not a zone; write it like europe-west4-b")
        return no_duplicates(v, "zone")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return dns_label(v, "node pool name")

    @model_validator(mode="after")
    def _sizes(self) -> "NodePool":
        if self.min_nodes > self.max_nodes:
            raise ValueError(
                f"minNodes ({self.min_nodes}) is greater than maxNodes ({self.max_nodes}); "
                "make minNodes <= maxNodes"
            )
        return self


class AuthorizedNetwork(ConfigModel):
    """A CIDR allowed to reach the control plane."""

    cidr: str
    """IPv4 CIDR, e.g. 203.0.113.0/24."""
    name: str = ""
    """Display name shown in the console."""

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        return ipv4_cidr(v, "203.0.113.0/24")


class DatapathObservability(ConfigModel):
    """Dataplane V2 observability (GKE `advanced_datapath_observability_config`)."""

    metrics: bool = False
    """Export Dataplane V2 metrics (flow and policy-verdict counters) to Cloud Monitoring / Managed Prometheus."""
    relay: bool = False
    """Run Hubble Relay so `kubectl`/`hubble observe` can follow flows and drop reasons live."""


class ClusterConfig(ConfigModel):
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
        dns_label(v, "cluster name")
        if len(v) > 40:
            raise ValueError(f"{v!r} is {len(v)} characters; GKE allows at most 40")
        return v

    @field_validator("location")
    @classmethod
    def _location(cls, v: str) -> str:
        if not (REGION.fullmatch(v) or ZONE.fullmatch(v)):
            raise ValueError(
                f"{v!r} is neither a region (e.g. europe-west4) nor a zone (e.g. europe-west4-a)"
            )
        return v

    @field_validator("control_plane_cidr")
    @classmethod
    def _cp_cidr(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        net = ipaddress.IPv4Network(ipv4_cidr(v, "172.16.0.32/28"))
        if net.prefixlen != 28 or not net.is_private:
            raise ValueError(f"{v!r} must be a private /28 (GKE requirement), e.g. 172.16.0.32/28")
        return str(net)

    @model_validator(mode="after")
    def _cluster_rules(self) -> "ClusterConfig":
        no_duplicates([p.name for p in self.node_pools], "node pool name")
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
        if self.node_service_account is not None and not SA_EMAIL.fullmatch(self.node_service_account):
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
        return bool(REGION.fullmatch(self.location))

    @property
    def region(self) -> str:
        return self.location if self.regional else self.location.rsplit("-", 1)[0]


class ExistingCluster(ConfigModel):
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


class ClusterDns(ConfigModel):
    """How pods resolve names, set once: every egress-locked policy (agents, egress-locked serving, the guardrail
    catalog's egress lockdown) opens exactly these DNS paths."""

    node_local_dns_cache: bool = False
    """The cluster runs NodeLocal DNSCache (pods query 169.254.20.10:53)."""
    cloud_dns: bool = False
    """The cluster uses Cloud DNS for GKE (pods query the metadata server 169.254.169.254:53)."""


