"""The whole stack config (`StackConfig`), the rules that span its sections, and how Pulumi config becomes one."""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from pydantic import Field, ValidationError, field_validator, model_validator

from components.config.base import PLATFORM_NAMESPACES, SA_USER, ConfigError, ConfigModel, namespace_list
from components.config.cluster import ClusterConfig, ClusterDns, ExistingCluster
from components.config.guardrails import GuardrailsConfig
from components.config.isolation import (
    AgentIsolationConfig,
    NetworkPolicyLoggingConfig,
    ServingEgressConfig,
    isolation_rules,
)
from components.config.kyverno import OPERATOR_NAMESPACES, KyvernoConfig
from components.config.network_policy import NetworkPolicyConfig
from components.config.tenants import PodSecurityConfig, TenantBoundariesConfig

PROJECT = "llm-platform"


class StackConfig(ConfigModel):
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
        return namespace_list(v, item="tenant", name="tenant namespace name", platform_refusal=lambda t: (
            f"tenant {t!r} is a platform namespace; tenants must be separate namespaces "
            f"(platform: {', '.join(sorted(PLATFORM_NAMESPACES))})"))

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
            m = SA_USER.fullmatch(user)
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
        isolation_rules(self)
        return self

    @model_validator(mode="after")
    def _trusted_pods_known(self) -> "StackConfig":
        # Last: a tenant or agent namespace in networkPolicy.allowedFrom gets that error first.
        self.network_policy.check_trusted_pods()
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
