"""GKE cluster with Dataplane V2, its node pools, and the Kubernetes provider built from it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components.config import ClusterConfig, ExistingCluster, NodePool

# Kyverno (and other admission webhooks) listen on 9443; GKE's default firewall lets the
# private control plane reach nodes on 443 and 10250 only.
WEBHOOK_PORTS = ["9443"]
GKE_CONTROL_PLANE_PORTS = frozenset({443, 10250})
"""Ports GKE's own firewall rule already opens from a VPC-peering control plane to the nodes."""


def webhook_firewall_ports(extra: Iterable[int]) -> list[str]:
    """Kyverno's webhook port plus ``extra`` (SR1's ``webhookPorts``), without those GKE already opens."""
    ports = {int(p) for p in WEBHOOK_PORTS} | set(extra)
    return [str(p) for p in sorted(ports) if p not in GKE_CONTROL_PLANE_PORTS]

# What the node service account the stack creates may do: GKE's least-privilege node role
# (logging, monitoring, metadata writes). Add roles/artifactregistry.reader on the registry
# that holds private images.
NODE_ROLES = ["roles/container.defaultNodeServiceAccount"]

# Machine families whose VMs must use gVNIC (GPUDirect-TCPX on A3). GKE Standard does not switch it on by
# itself: only Autopilot nodes get gVNIC automatically (docs/deploy.md, "gVNIC on A3 pools").
GVNIC_MACHINE_FAMILIES = ("a3",)


def needs_gvnic(machine_type: str) -> bool:
    """Whether a pool of `machine_type` gets gVNIC (``node_config.gvnic``)."""
    return machine_type.split("-", 1)[0] in GVNIC_MACHINE_FAMILIES


@dataclass
class GkeClusterArgs:
    """Inputs of :class:`GkeCluster`."""

    config: ClusterConfig
    """Validated cluster settings from the stack config."""
    project: str
    """Google Cloud project id (Workload Identity pool `<project>.svc.id.goog`)."""
    webhook_ports: list[int] = field(default_factory=list)
    """Admission-webhook container ports besides Kyverno's (SR1's ``webhookPorts``): a VPC-peering private
    control plane calls them from ``controlPlaneCidr``, so the webhook firewall rule opens them too."""


def replacement_guard(config: ClusterConfig) -> bool:
    """Whether the cluster is `protect`ed: Pulumi then refuses to delete or replace it.

    Lifted only by ``allowReplacement: true`` (a reviewed, deliberate change) or on a stack
    that turned deletion protection off.
    """
    return config.deletion_protection and not config.allow_replacement


def dns_endpoint(endpoints_config: Any) -> pulumi.Input[str]:
    """The cluster's DNS endpoint from ``control_plane_endpoints_config``.

    The input half of that object is known during a preview of a new cluster, the endpoint is
    not: then the result is unknown (never a kubeconfig with an empty server).
    """
    endpoint = ((endpoints_config or {}).get("dns_endpoint_config") or {}).get("endpoint")
    if endpoint:
        return endpoint
    if pulumi.runtime.is_dry_run():
        return unknown_output()
    raise ValueError("GKE returned no DNS endpoint for a cluster with controlPlaneAccess: dns")


def unknown_output() -> pulumi.Output[Any]:
    """An Output whose value is not known yet (what the engine gives a preview for computed values)."""
    loop = asyncio.get_event_loop()
    value, known = loop.create_future(), loop.create_future()
    value.set_result(None)
    known.set_result(False)
    return pulumi.Output(set(), value, known)


def node_account_id(cluster_name: str) -> str:
    """Account id of the node service account the stack creates (6-30 chars)."""
    return f"{cluster_name[:24].rstrip('-')}-nodes"


def kubeconfig(name: str, endpoint: str, ca_certificate: Optional[str]) -> str:
    """A kubeconfig that authenticates with gke-gcloud-auth-plugin (no static credentials).

    ``ca_certificate`` None: the DNS-based endpoint, whose certificate is publicly trusted.
    """
    ca = f"\n    certificate-authority-data: {ca_certificate}" if ca_certificate else ""
    return f"""apiVersion: v1
kind: Config
clusters:
- name: {name}
  cluster:
    server: https://{endpoint}{ca}
contexts:
- name: {name}
  context:
    cluster: {name}
    user: {name}
current-context: {name}
users:
- name: {name}
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: gke-gcloud-auth-plugin
      installHint: Install gke-gcloud-auth-plugin, see https://cloud.google.com/kubernetes-engine/docs/how-to/cluster-access-for-kubectl#install_plugin
      provideClusterInfo: true
"""


class GkeCluster(pulumi.ComponentResource):
    """A GKE cluster with Dataplane V2, separate node pools and a server-side-apply provider."""

    cluster: gcp.container.Cluster
    node_pools: list[gcp.container.NodePool]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    adopting_provider: k8s.Provider
    ready: list[pulumi.Resource]

    def __init__(self, name: str, args: GkeClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:cluster:GkeCluster", name, None, opts)
        cfg = args.config
        node_tag = f"{cfg.name}-node"
        protect = replacement_guard(cfg)

        private = None
        if cfg.private_nodes:
            private = gcp.container.ClusterPrivateClusterConfigArgs(
                enable_private_nodes=True,
                enable_private_endpoint=False,
                master_ipv4_cidr_block=cfg.control_plane_cidr,
            )

        # Least-privilege node identity instead of the default Compute Engine service account. Normally the
        # stack names one that ci/identities created (cluster.nodeServiceAccount): creating it here needs the
        # deployer to hold serviceAccountAdmin and projectIamAdmin, which the CI deployers do not.
        sa_deps: list[pulumi.Resource] = []
        node_email = cfg.node_service_account or f"{node_account_id(cfg.name)}@{args.project}.iam.gserviceaccount.com"
        if cfg.node_service_account:
            self.node_service_account: pulumi.Input[str] = cfg.node_service_account
        else:
            account = gcp.serviceaccount.Account(
                f"{cfg.name}-nodes",
                project=args.project,
                account_id=node_account_id(cfg.name),
                display_name=f"GKE nodes of {cfg.name}",
                opts=pulumi.ResourceOptions(parent=self),
            )
            sa_deps = [account] + [
                gcp.projects.IAMMember(
                    f"{cfg.name}-nodes-{role.rsplit('.', 1)[-1]}",
                    project=args.project,
                    role=role,
                    member=account.member,
                    opts=pulumi.ResourceOptions(parent=self),
                )
                for role in NODE_ROLES
            ]
            self.node_service_account = account.email

        self.cluster = gcp.container.Cluster(
            cfg.name,
            name=cfg.name,
            project=args.project,
            location=cfg.location,
            network=cfg.network,
            subnetwork=cfg.subnetwork,
            # Dataplane V2 enforces NetworkPolicy with eBPF; it is immutable, so it is set at creation.
            datapath_provider="ADVANCED_DATAPATH",
            # No legacy network_policy / addons_config.network_policy_config: GKE rejects them with Dataplane V2.
            release_channel=gcp.container.ClusterReleaseChannelArgs(channel=cfg.release_channel),
            workload_identity_config=gcp.container.ClusterWorkloadIdentityConfigArgs(
                workload_pool=f"{args.project}.svc.id.goog"
            ),
            ip_allocation_policy=gcp.container.ClusterIpAllocationPolicyArgs(),
            private_cluster_config=private,
            master_authorized_networks_config=(
                gcp.container.ClusterMasterAuthorizedNetworksConfigArgs(
                    cidr_blocks=[
                        gcp.container.ClusterMasterAuthorizedNetworksConfigCidrBlockArgs(
                            cidr_block=n.cidr, display_name=n.name or n.cidr
                        )
                        for n in cfg.authorized_networks
                    ]
                )
                if cfg.authorized_networks
                else None
            ),
            control_plane_endpoints_config=(
                gcp.container.ClusterControlPlaneEndpointsConfigArgs(
                    dns_endpoint_config=gcp.container.ClusterControlPlaneEndpointsConfigDnsEndpointConfigArgs(
                        allow_external_traffic=True
                    )
                )
                if cfg.control_plane_access == "dns"
                else None
            ),
            enable_shielded_nodes=True,
            remove_default_node_pool=True,
            initial_node_count=1,
            deletion_protection=cfg.deletion_protection and not cfg.allow_replacement,
            # Off by default: both are None then, so a stack without them renders exactly as before.
            monitoring_config=datapath_monitoring(cfg),
            enable_fqdn_network_policy=True if cfg.fqdn_network_policy else None,
            # GKE creates a temporary default pool (removed at once, remove_default_node_pool); without a
            # service account it runs as the Compute Engine default one, and creating the cluster then needs
            # actAs on that account (often an Editor). The node account keeps actAs to one account.
            node_config=gcp.container.ClusterNodeConfigArgs(
                service_account=node_email, oauth_scopes=["https://www.googleapis.com/auth/cloud-platform"]
            ),
            # Only the temporary pool reads it: a cluster created before it was set must not be replaced for it.
            opts=pulumi.ResourceOptions(parent=self, protect=protect, depends_on=sa_deps, ignore_changes=["nodeConfig"]),
        )

        self.node_pools = [self._node_pool(cfg, pool, node_tag, protect, sa_deps) for pool in cfg.node_pools]

        children: list[pulumi.Resource] = [self.cluster, *sa_deps, *self.node_pools]
        if cfg.nat:
            # Private nodes have no external IPs: images (Kyverno, hook jobs) are pulled through NAT.
            router = gcp.compute.Router(
                f"{cfg.name}-router",
                name=f"{cfg.name}-router",
                project=args.project,
                region=cfg.region,
                network=cfg.network,
                opts=pulumi.ResourceOptions(parent=self),
            )
            nat = gcp.compute.RouterNat(
                f"{cfg.name}-nat",
                name=f"{cfg.name}-nat",
                project=args.project,
                region=cfg.region,
                router=router.name,
                nat_ip_allocate_option="AUTO_ONLY",
                source_subnetwork_ip_ranges_to_nat=(
                    "LIST_OF_SUBNETWORKS" if cfg.subnetwork else "ALL_SUBNETWORKS_ALL_IP_RANGES"
                ),
                subnetworks=(
                    [
                        gcp.compute.RouterNatSubnetworkArgs(
                            name=cfg.subnetwork, source_ip_ranges_to_nats=["ALL_IP_RANGES"]
                        )
                    ]
                    if cfg.subnetwork
                    else None
                ),
                log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
                opts=pulumi.ResourceOptions(parent=self),
            )
            children += [router, nat]
        if cfg.private_nodes and cfg.control_plane_cidr:
            children.append(
                gcp.compute.Firewall(
                    f"{cfg.name}-webhooks",
                    project=args.project,
                    network=cfg.network,
                    description="GKE control plane to admission webhooks (Kyverno, SR1 webhookPorts) on the nodes",
                    direction="INGRESS",
                    source_ranges=[cfg.control_plane_cidr],
                    target_tags=[node_tag],
                    allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=webhook_firewall_ports(args.webhook_ports))],
                    opts=pulumi.ResourceOptions(parent=self),
                )
            )

        if cfg.control_plane_access == "dns":
            # As `gcloud container clusters get-credentials --dns-endpoint` writes it: the DNS
            # endpoint serves a publicly trusted certificate, access is decided by IAM.
            endpoint = self.cluster.control_plane_endpoints_config.apply(dns_endpoint)
            self.kubeconfig = pulumi.Output.secret(
                pulumi.Output.all(self.cluster.name, endpoint).apply(lambda a: kubeconfig(a[0], a[1], None))
            )
        else:
            self.kubeconfig = pulumi.Output.secret(
                pulumi.Output.all(self.cluster.name, self.cluster.endpoint, self.cluster.master_auth).apply(
                    lambda a: kubeconfig(a[0], a[1], a[2]["cluster_ca_certificate"])
                )
            )
        # Everything Kubernetes workloads need from the cloud side before they are installed.
        self.ready: list[pulumi.Resource] = children
        identifier = gke_cluster_identifier(args.project, cfg)
        self.provider = kubernetes_provider(
            f"{cfg.name}-k8s",
            cluster_identifier=identifier,
            kubeconfig=self.kubeconfig,
            opts=pulumi.ResourceOptions(parent=self, depends_on=children),
        )
        self.adopting_provider = kubernetes_provider(
            f"{cfg.name}-k8s-adopt",
            cluster_identifier=identifier,
            kubeconfig=self.kubeconfig,
            upsert_existing_objects=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=children),
        )
        self.register_outputs(
            {
                "clusterName": self.cluster.name,
                "endpoint": self.cluster.endpoint,
                "datapathProvider": self.cluster.datapath_provider,
                "nodePools": [p.name for p in self.node_pools],
            }
        )

    def _node_pool(
        self, cfg: ClusterConfig, pool: NodePool, node_tag: str, protect: bool, sa_deps: list[pulumi.Resource]
    ) -> gcp.container.NodePool:
        accelerators = None
        if pool.gpu:
            accelerators = [
                gcp.container.NodePoolNodeConfigGuestAcceleratorArgs(
                    type=pool.gpu.type,
                    count=pool.gpu.count,
                    gpu_driver_installation_config=gcp.container.NodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfigArgs(
                        gpu_driver_version=pool.gpu.driver_version
                    ),
                )
            ]
        return gcp.container.NodePool(
            f"{cfg.name}-{pool.name}",
            name=pool.name,
            cluster=self.cluster.id,
            location=cfg.location,
            node_locations=pool.node_locations or None,
            autoscaling=gcp.container.NodePoolAutoscalingArgs(
                min_node_count=pool.min_nodes, max_node_count=pool.max_nodes
            ),
            management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
            node_config=gcp.container.NodePoolNodeConfigArgs(
                machine_type=pool.machine_type,
                disk_size_gb=pool.disk_size_gb,
                spot=pool.spot,
                tags=[node_tag],
                # gVisor runs only on Container-Optimized OS with containerd.
                image_type="COS_CONTAINERD",
                guest_accelerators=accelerators,
                sandbox_config=(
                    gcp.container.NodePoolNodeConfigSandboxConfigArgs(type="GVISOR") if pool.sandbox else None
                ),
                workload_metadata_config=gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(
                    mode="GKE_METADATA"
                ),
                shielded_instance_config=gcp.container.NodePoolNodeConfigShieldedInstanceConfigArgs(
                    enable_secure_boot=True, enable_integrity_monitoring=True
                ),
                gvnic=gcp.container.NodePoolNodeConfigGvnicArgs(enabled=True) if needs_gvnic(pool.machine_type) else None,
                # Google's recommendation: the broad scope, with access decided by the node
                # service account's IAM roles (least privilege, see NODE_ROLES).
                service_account=self.node_service_account,
                oauth_scopes=["https://www.googleapis.com/auth/cloud-platform"],
            ),
            opts=pulumi.ResourceOptions(parent=self, protect=protect, depends_on=sa_deps),
        )


def datapath_monitoring(config: ClusterConfig) -> Optional[gcp.container.ClusterMonitoringConfigArgs]:
    """Dataplane V2 metrics / flow observability (`advanced_datapath_observability_config`), or None when off."""
    obs = config.datapath_observability
    if not (obs.metrics or obs.relay):
        return None
    return gcp.container.ClusterMonitoringConfigArgs(
        advanced_datapath_observability_config=gcp.container.ClusterMonitoringConfigAdvancedDatapathObservabilityConfigArgs(
            enable_metrics=obs.metrics, enable_relay=obs.relay
        )
    )


def kubernetes_provider(
    name: str,
    *,
    cluster_identifier: str,
    kubeconfig: Optional[pulumi.Input[str]] = None,
    context: Optional[str] = None,
    upsert_existing_objects: bool = False,
    opts: Optional[pulumi.ResourceOptions] = None,
) -> k8s.Provider:
    """The Kubernetes provider (server-side apply, explicitly).

    Every Kubernetes resource uses the strict one (a create of an existing object fails);
    only the namespaces the stack adopts use the one with ``upsert_existing_objects``.
    ``cluster_identifier`` names the cluster: the provider (and so every object it manages) is replaced
    only when it changes, not when the kubeconfig's endpoint, CA or access mode does (pulumi-kubernetes
    DiffConfig; adding it to an existing provider is not a change).
    """
    return k8s.Provider(
        name,
        cluster_identifier=cluster_identifier,
        kubeconfig=kubeconfig,
        context=context,
        enable_server_side_apply=True,
        # Explicit, so PULUMI_K8S_UPSERT_EXISTING_OBJECTS in the environment cannot turn it on.
        upsert_existing_objects=upsert_existing_objects,
        opts=opts,
    )


def existing_cluster_provider(config: ExistingCluster) -> k8s.Provider:
    """Provider for a cluster someone else manages: no GKE resources are created."""
    # The provider accepts a kubeconfig path as well as its contents; None means $KUBECONFIG.
    return kubernetes_provider("existing-cluster", cluster_identifier=existing_cluster_identifier(config),
                               kubeconfig=config.kubeconfig, context=config.context)


def existing_cluster_adopting_provider(config: ExistingCluster) -> k8s.Provider:
    """The adopting provider (``upsertExistingObjects``) for the namespaces of an existing cluster."""
    return kubernetes_provider(
        "existing-cluster-adopt", cluster_identifier=existing_cluster_identifier(config),
        kubeconfig=config.kubeconfig, context=config.context, upsert_existing_objects=True
    )


def gke_cluster_identifier(project: str, config: ClusterConfig) -> str:
    """What names the GKE cluster for the providers: project, location and name (a new cluster only if one changes)."""
    return f"gke/{project}/{config.location}/{config.name}"


def existing_cluster_identifier(config: ExistingCluster) -> str:
    """An existing cluster is named by its kubeconfig context."""
    return f"context/{config.context}"
