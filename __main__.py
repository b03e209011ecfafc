"""llm-platform: a GKE cluster with Dataplane V2 and, behind `security`, SR1 + SR2."""

import pulumi

from components import config
from components.cluster import (
    GkeCluster,
    GkeClusterArgs,
    existing_cluster_adopting_provider,
    existing_cluster_provider,
)
from components.cluster_access import ClusterAccess
from components.namespaces import PlatformNamespaces, PlatformNamespacesArgs, namespace_labels, written_namespaces

# 1. Typed config, validated before anything is registered.
try:
    settings = config.load()
except config.ConfigError as err:
    raise pulumi.RunError(str(err)) from None

# 2. The cluster: created here, or someone else's.
cluster_deps: list[pulumi.Resource] = []
if settings.cluster is not None:
    from components.network_policy import webhook_ports

    gke = GkeCluster("gke", GkeClusterArgs(
        config=settings.cluster, project=settings.gcp_project,
        webhook_ports=webhook_ports(settings.network_policy) if settings.security else [],
    ))
    provider = gke.provider
    adopting_provider = gke.adopting_provider
    access = ClusterAccess(kubeconfig=gke.kubeconfig)
    cluster_deps = gke.ready
    pulumi.export("clusterName", gke.cluster.name)
    pulumi.export("datapathProvider", gke.cluster.datapath_provider)
    pulumi.export("kubeconfig", gke.kubeconfig)
else:
    provider = existing_cluster_provider(settings.existing_cluster)
    adopting_provider = existing_cluster_adopting_provider(settings.existing_cluster)
    access = ClusterAccess(
        context=settings.existing_cluster.context, kubeconfig_path=settings.existing_cluster.kubeconfig
    )

# 2b. Dataplane V2 network policy logging (off by default: nothing registered).
if settings.network_policy_logging.enabled:
    from components.observability import NetworkPolicyLogging, NetworkPolicyLoggingArgs

    NetworkPolicyLogging(
        "network-policy-logging",
        NetworkPolicyLoggingArgs(config=settings.network_policy_logging),
        opts=pulumi.ResourceOptions(providers=[provider], depends_on=cluster_deps),
    )

# 3. The namespaces the stack writes into: created when missing, adopted when present, retained.
namespaces = PlatformNamespaces(
    "namespaces",
    PlatformNamespacesArgs(
        names=written_namespaces(settings), adopting_provider=adopting_provider, depends_on=cluster_deps,
        labels=namespace_labels(settings),
    ),
)

# 4. The security capability group plugs in here, and only here.
pulumi.export("security", settings.security)
if settings.security:
    from components.security import Security, SecurityArgs

    Security(
        "security",
        SecurityArgs(
            settings=settings,
            access=access,
            depends_on=cluster_deps,
            namespaces=namespaces.by_name,
            adopting_provider=adopting_provider,
            api_server_endpoint=gke.cluster.endpoint if settings.cluster is not None else None,
        ),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )
