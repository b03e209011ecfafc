"""Typed stack configuration: the one place Pulumi config is read and validated.

The program calls :func:`load` once; every component receives typed settings from here.
Any problem becomes one :class:`ConfigError` naming the key path, what is wrong and how
to fix it, raised before a single resource is registered.

One module per concern, all re-exported here (``from components.config import X``):

* ``base``: the base model, :class:`ConfigError` and the shared rules (namespace lists, CIDRs, ports, labels);
* ``cluster``: ``cluster``, ``existingCluster``, ``clusterDns``;
* ``network_policy``: SR1 (``networkPolicy``);
* ``kyverno``: SR2 (``kyverno``, its Kueue installation and trusted controllers);
* ``guardrails``: the guardrail catalog (``guardrails``);
* ``tenants``: ``podSecurity`` and ``tenantBoundaries``;
* ``isolation``: ``agentIsolation``, ``servingEgress``, ``networkPolicyLogging``;
* ``stack``: :class:`StackConfig`, the rules spanning sections, :func:`parse` and :func:`load`.
"""

from __future__ import annotations

from components.config.base import PLATFORM_NAMESPACES, ConfigError, ConfigModel
from components.config.cluster import (
    AuthorizedNetwork,
    ClusterConfig,
    ClusterDns,
    DatapathObservability,
    ExistingCluster,
    Gpu,
    NodePool,
)
from components.config.guardrails import (
    BASELINE_RULES,
    AcceleratorOvercommitPolicy,
    ApprovedModelsPolicy,
    BaselineException,
    EgressDestination,
    EgressLockdownPolicy,
    GpuCapPolicy,
    GuardrailPolicy,
    GuardrailsConfig,
    MemoryBoundsPolicy,
    OwnershipPolicy,
    RequireLimitsPolicy,
    ReserveAcceleratorNodesPolicy,
    SecurityBaselinePolicy,
    TrustedRegistriesPolicy,
)
from components.config.isolation import (
    AgentIsolationConfig,
    AgentPodSecurityConfig,
    GatewayTarget,
    NetworkPolicyLoggingConfig,
    ServingEgressConfig,
)
from components.config.kyverno import (
    KUEUE_DEFAULT_FRAMEWORKS,
    KUEUE_FRAMEWORKS,
    KUEUE_IMPLIES_POD,
    KUEUE_VERSION,
    OPERATOR_NAMESPACES,
    KueueConfig,
    KyvernoConfig,
    KyvernoInstall,
    TrustedControllers,
)
from components.config.network_policy import (
    BENCHMARK_CLIENT,
    InNamespaceClient,
    NetworkPolicyConfig,
    PlatformServicesConfig,
)
from components.config.stack import PROJECT, StackConfig, load, parse
from components.config.tenants import (
    BUILTIN_NETWORK_POLICY_WRITER_GROUPS,
    BUILTIN_NETWORK_POLICY_WRITERS,
    POD_SECURITY_VERSION,
    GatewayRef,
    PodSecurityConfig,
    TenantBoundariesConfig,
)

# The base model under its former name (tests subclass it as `config._Model`).
_Model = ConfigModel

__all__ = [
    "BASELINE_RULES",
    "BENCHMARK_CLIENT",
    "BUILTIN_NETWORK_POLICY_WRITERS",
    "BUILTIN_NETWORK_POLICY_WRITER_GROUPS",
    "KUEUE_DEFAULT_FRAMEWORKS",
    "KUEUE_FRAMEWORKS",
    "KUEUE_IMPLIES_POD",
    "KUEUE_VERSION",
    "OPERATOR_NAMESPACES",
    "PLATFORM_NAMESPACES",
    "POD_SECURITY_VERSION",
    "PROJECT",
    "AcceleratorOvercommitPolicy",
    "AgentIsolationConfig",
    "AgentPodSecurityConfig",
    "ApprovedModelsPolicy",
    "AuthorizedNetwork",
    "BaselineException",
    "ClusterConfig",
    "ClusterDns",
    "ConfigError",
    "ConfigModel",
    "DatapathObservability",
    "EgressDestination",
    "EgressLockdownPolicy",
    "ExistingCluster",
    "GatewayRef",
    "GatewayTarget",
    "Gpu",
    "GpuCapPolicy",
    "GuardrailPolicy",
    "GuardrailsConfig",
    "InNamespaceClient",
    "KueueConfig",
    "KyvernoConfig",
    "KyvernoInstall",
    "MemoryBoundsPolicy",
    "NetworkPolicyConfig",
    "NetworkPolicyLoggingConfig",
    "NodePool",
    "OwnershipPolicy",
    "PlatformServicesConfig",
    "PodSecurityConfig",
    "RequireLimitsPolicy",
    "ReserveAcceleratorNodesPolicy",
    "SecurityBaselinePolicy",
    "ServingEgressConfig",
    "StackConfig",
    "TenantBoundariesConfig",
    "TrustedControllers",
    "TrustedRegistriesPolicy",
    "load",
    "parse",
]
