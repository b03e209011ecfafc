"""SR1 settings (`networkPolicy`): the protected namespaces, who reaches them, and the platform services around them."""

from __future__ import annotations

from typing import Optional

from pydantic import Field, field_validator, model_validator

from components.config.base import (
    LABEL_KEY,
    LABEL_VALUE,
    CidrList,
    ConfigModel,
    NamespaceList,
    dns_label,
    label_map,
    namespace_name,
    no_duplicates,
    port_list,
)
from components.platform_facts import (
    DEFAULT_PROTECTED_NAMESPACES,
    LITELLM_NAMESPACE,
    MANAGED_PROMETHEUS_NAMESPACE,
    MONITORING_NAMESPACE,
    TRUSTED_PLATFORM_PODS,
)


class InNamespaceClient(ConfigModel):
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
        if not LABEL_KEY.fullmatch(v):
            raise ValueError(f"{v!r} is not a label key (optional DNS prefix '/', then a name of at most 63 characters)")
        return v

    @field_validator("values")
    @classmethod
    def _values(cls, v: list[str]) -> list[str]:
        for x in v:
            if not LABEL_VALUE.fullmatch(x):
                raise ValueError(f"{x!r} is not a label value (at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends)")
        return no_duplicates(v, "label value")


BENCHMARK_CLIENT = "benchmark"
"""Name of the `inNamespaceClients` entry whose labels select the benchmark Jobs (also across namespaces)."""


def benchmark_client() -> InNamespaceClient:
    # benchmarks/job.yaml, benchmarks/guidellm-job.yaml of the reference platform.
    return InNamespaceClient(name=BENCHMARK_CLIENT, label="app.kubernetes.io/name", values=["vllm-bench", "guidellm-bench"])


def _default_in_namespace_clients() -> list[InNamespaceClient]:
    # Labels from the upstream sources (docs/sr1-network-policies.md, "Where the facts come from").
    return [
        InNamespaceClient(name="gateway-proxy", label="gateway.networking.k8s.io/gateway-name"),
        InNamespaceClient(name="endpoint-picker", label="inferencepool"),
        InNamespaceClient(name="llm-inference-service", label="app.kubernetes.io/part-of", values=["llminferenceservice"]),
        benchmark_client(),
    ]


class PlatformServicesConfig(ConfigModel):
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
    prometheus_clients: NamespaceList = Field(default_factory=lambda: ["keda"])
    """Namespaces that query Prometheus on 9090 (KEDA's operator: serving/raw-vllm/scaledobject.yaml)."""

    @field_validator("database_operator_namespace", "database_cluster")
    @classmethod
    def _name(cls, v: str) -> str:
        return dns_label(v, "name")

    @property
    def namespaces(self) -> list[str]:
        """The service namespaces that get policies."""
        return [ns for ns, on in ((LITELLM_NAMESPACE, self.litellm), (MONITORING_NAMESPACE, self.monitoring)) if on]


class NetworkPolicyConfig(ConfigModel):
    """SR1 NetworkPolicies in every protected namespace (active with `security: true`)."""

    protected_namespaces: NamespaceList = Field(default_factory=lambda: list(DEFAULT_PROTECTED_NAMESPACES))
    """Namespaces that run model servers, endpoint pickers or gateway proxies; each gets default-deny
    ingress plus the same platform allow-list."""
    allowed_from: NamespaceList = Field(
        default_factory=lambda: ["litellm", "inference", "agentgateway-system", "monitoring"]
    )
    """Trusted platform namespaces whose calling pods (`allowedFromPods`) reach every protected namespace (a
    namespace never gets this allow into itself; its own flows are `inNamespaceClients`). Only those pods are
    trusted, never the whole namespace: a name without known pods is an error."""
    allowed_from_pods: dict[str, list[dict[str, str]]] = Field(default_factory=dict)
    """Which pods of a trusted namespace are trusted: namespace -> label sets (a pod matching every label of
    one set is trusted; matched only inside that namespace). An entry replaces the platform default for its
    namespace; a namespace without an entry gets the default: `litellm` LiteLLM's proxy
    (`app.kubernetes.io/name: litellm`), `inference` and `agentgateway-system` the agentgateway proxies
    (`gateway.networking.k8s.io/gateway-class-name: agentgateway`), `monitoring` Prometheus
    (`app.kubernetes.io/name: prometheus`), `gmp-system` the Managed Prometheus collectors
    (`app.kubernetes.io/name: collector`). Any other `allowedFrom` namespace must have an entry. A separate
    map rather than objects inside `allowedFrom` keeps `allowedFrom` a plain namespace list (what other keys
    are checked against) and lets a stack override one namespace without restating the rest."""
    in_namespace_clients: list[InNamespaceClient] = Field(default_factory=_default_in_namespace_clients)
    """Pods (by label) that reach every pod of their own protected namespace: gateway proxies,
    endpoint pickers/schedulers, llm-d decode/prefill, benchmark clients."""
    ports: Optional[dict[str, list[int]]] = None
    """Opt-in port scoping: namespace -> the container ports every allow rule into it opens. Unset
    (default) = every port. When set it must list every protected namespace."""
    managed_prometheus: bool = False
    """Also allow GKE Managed Prometheus (`gmp-system`) like a trusted namespace."""
    gke_l7_proxy_ranges: CidrList = Field(default_factory=list)
    """CIDRs of a GKE-managed Gateway's proxies (proxy-only subnet, 35.191.0.0/16, 130.211.0.0/22) to the protected namespaces."""
    control_plane_ranges: CidrList = Field(default_factory=list)
    """CIDRs the Kubernetes API server calls admission webhooks from (e.g. the KServe controller in `kserve`)."""
    intra_namespace: NamespaceList = Field(default_factory=list)
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

    @field_validator("gateway_internet_egress")
    @classmethod
    def _gateways(cls, v: list[str]) -> list[str]:
        for ref in v:
            ns, sep, name = ref.partition("/")
            if not sep:
                raise ValueError(f"{ref!r} is not `namespace/name` of a Gateway, e.g. inference/inference-gateway")
            namespace_name(ns)
            dns_label(name, "Gateway name")
        return no_duplicates(v, "Gateway")

    @field_validator("allowed_from_pods")
    @classmethod
    def _allowed_from_pods(cls, v: dict[str, list[dict[str, str]]]) -> dict[str, list[dict[str, str]]]:
        for ns, selectors in v.items():
            namespace_name(ns)
            if not selectors:
                raise ValueError(
                    f"`{ns}` lists no pods, so nothing of {ns} would be trusted; list the labels of its pods that "
                    f"call the protected namespaces, or remove {ns} from `allowedFrom`"
                )
            for labels in selectors:
                if not labels:
                    raise ValueError(
                        f"`{ns}` has an empty label set, which would trust every pod of {ns}; write the labels of "
                        "the pods that call the protected namespaces, e.g. {app.kubernetes.io/name: prometheus}"
                    )
                label_map(labels, f"`{ns}` label")
                if any(not value for value in labels.values()):
                    raise ValueError(f"`{ns}` has an empty label value in {labels}; name the value the pods carry")
            no_duplicates([tuple(sorted(labels.items())) for labels in selectors], f"`{ns}` label set")
        return v

    @field_validator("in_namespace_clients")
    @classmethod
    def _clients(cls, v: list[InNamespaceClient]) -> list[InNamespaceClient]:
        no_duplicates([c.name for c in v], "inNamespaceClients name")
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
            port_list(ports, f"`{ns}`")
        return v

    @field_validator("webhook_ports")
    @classmethod
    def _webhook_ports(cls, v: dict[str, list[int]]) -> dict[str, list[int]]:
        for ns, ports in v.items():
            namespace_name(ns)
            port_list(ports, f"`{ns}`")
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
        trusted = self.trusted_namespace_names
        stray = [ns for ns in self.allowed_from_pods if ns not in trusted]
        if stray:
            raise ValueError(
                f"`allowedFromPods` names {', '.join(stray)}, which is not a trusted namespace (`allowedFrom`, or "
                "gmp-system with `managedPrometheus: true`); add it there or remove its entry"
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
    def trusted_namespace_names(self) -> list[str]:
        """Namespaces whose trusted pods reach the protected ones: `allowedFrom`, then `gmp-system` with
        `managedPrometheus`."""
        extra = [MANAGED_PROMETHEUS_NAMESPACE] if self.managed_prometheus else []
        return list(dict.fromkeys([*self.allowed_from, *extra]))

    def check_trusted_pods(self) -> None:
        """Raise unless every trusted namespace has known pods (an `allowedFromPods` entry or a platform default).

        The stack config runs this after its tenant and agent checks, so a tenant or agent namespace listed in
        `allowedFrom` gets that error rather than an invitation to name its pods.
        """
        unknown = [ns for ns in self.trusted_namespace_names if ns not in self.allowed_from_pods and ns not in TRUSTED_PLATFORM_PODS]
        if unknown:
            raise ValueError(
                f"`networkPolicy.allowedFrom` names {', '.join(unknown)}, whose trusted pods are not known (a namespace "
                f"is never trusted whole); add `networkPolicy.allowedFromPods: {{{unknown[0]}: [{{<label>: <value>}}]}}` "
                "with the labels of the pods that call the protected namespaces, or remove it from `allowedFrom`"
            )

    @property
    def trusted_pods(self) -> dict[str, list[dict[str, str]]]:
        """Trusted namespace -> its trusted pods' label sets: the `allowedFromPods` entry, else the platform's
        default (:meth:`check_trusted_pods` raises when there is neither)."""
        self.check_trusted_pods()
        return {
            ns: [dict(labels) for labels in self.allowed_from_pods.get(ns, TRUSTED_PLATFORM_PODS.get(ns, ()))]
            for ns in self.trusted_namespace_names
        }

    @property
    def protected_namespace_names(self) -> list[str]:
        """The protected namespaces (SR1's model-serving side)."""
        return list(self.protected_namespaces)

    @property
    def written_namespace_names(self) -> list[str]:
        """Every namespace SR1 writes NetworkPolicies into: the protected ones, then `litellm` / `monitoring`
        (``platformServices``); the stack creates or adopts them."""
        return list(self.protected_namespaces) + self.platform_services.namespaces
