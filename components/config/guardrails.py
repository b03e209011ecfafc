"""The guardrail catalog (`guardrails`): Kyverno cost and security policies for LLM workloads, one model per policy."""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from components.config.base import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    ConfigModel,
    NamespaceList,
    dns_label,
    ipv4_cidr,
    label_map,
    no_duplicates,
    port_list,
    scope_namespaces,
)

_MODEL = re.compile(r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*?(-v\*)?$")
_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9._-]+)*/?$")
# Keys `guardrails.egressLockdown` no longer has: the DNS paths are `clusterDns.nodeLocalDnsCache` / `cloudDns`.
_MOVED_DNS_KEYS = ("nodeLocalDns", "cloudDns")


class GuardrailPolicy(ConfigModel):
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
        return scope_namespaces(v, "remove the key or set enabled: false")

    @field_validator("namespace_selector", "object_selector")
    @classmethod
    def _selectors(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return label_map(v, to_camel(info.field_name or ""))


class GpuCapPolicy(GuardrailPolicy):
    """1. At most N accelerators per Pod, per accelerator resource."""

    max_accelerators_per_pod: int = Field(4, ge=1, le=64)
    """Cap per Pod, summed over containers and initContainers (and DRA claims, below)."""
    accelerator_device_classes: list[str] = Field(default_factory=lambda: ["gpu.nvidia.com", "mig.nvidia.com"])
    """DRA DeviceClasses that hand out accelerators (counted against the cap per claim)."""
    max_accelerators_per_claim: Optional[int] = Field(None, ge=1, le=64)
    """Cap per DRA ResourceClaim / ResourceClaimTemplate and device class; default `maxAcceleratorsPerPod`. A Pod
    cannot show its claims' counts, so each claim it references counts as this cap: with the default a Pod may
    reference one claim; set e.g. 2 with a cap of 4 per Pod to allow two claims of up to 2."""

    @field_validator("accelerator_device_classes")
    @classmethod
    def _device_classes(cls, v: list[str]) -> list[str]:
        for dc in v:
            if not DNS_SUBDOMAIN.fullmatch(dc):
                raise ValueError(f"device class {dc!r} is not a DeviceClass name (DNS subdomain), e.g. gpu.nvidia.com")
        return no_duplicates(v, "device class")

    @model_validator(mode="after")
    def _claim_cap(self) -> "GpuCapPolicy":
        if self.max_accelerators_per_claim is not None and self.max_accelerators_per_claim > self.max_accelerators_per_pod:
            raise ValueError(f"maxAcceleratorsPerClaim {self.max_accelerators_per_claim} is above maxAcceleratorsPerPod "
                             f"{self.max_accelerators_per_pod}: one claim could then exceed the Pod cap; lower it")
        return self

    @property
    def claim_cap(self) -> int:
        return self.max_accelerators_per_claim or self.max_accelerators_per_pod


class AcceleratorOvercommitPolicy(GuardrailPolicy):
    """2. Accelerator requests equal limits where both are set."""


class _CatalogException(ConfigModel):
    """The checks every catalog PolicyException setting shares (each subclass declares and documents
    `name`, `namespace` and `names`)."""

    @field_validator("name", "namespace", check_fields=False)
    @classmethod
    def _dns(cls, v: str, info: ValidationInfo) -> str:
        return dns_label(v, f"exception {info.field_name}")

    @field_validator("names", check_fields=False)
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for n in v:
            if n in ("*", "?") or not n.strip("*?"):
                raise ValueError(f"exception name {n!r} matches every object; name the objects")
        return v


class ModelException(_CatalogException):
    """A PolicyException lifting approved-models for an operator's workloads in one namespace, by name."""

    name: str
    """PolicyException name (created in the kyverno namespace)."""
    namespace: str
    """The one namespace the operator creates its workloads in (only the platform may write there)."""
    names: list[str] = Field(min_length=1)
    """The names the operator gives its Deployments and, with the ReplicaSet suffix, its Pods (wildcards)."""
    kinds: list[str] = Field(default_factory=lambda: ["Pod", "apps/v1/Deployment"])
    """Kinds the exception covers."""


def _default_model_exceptions() -> list[ModelException]:
    # KServe (0.19) and llm-d stage the model named on their custom resource to /mnt/models, so the Pod names
    # a path; the InferenceService controller names its Deployment <isvc>-predictor, the LLMInferenceService
    # controller <llmisvc>-kserve (and -kserve-prefill); their Pods add the ReplicaSet suffix.
    return [
        ModelException(name="guardrail-kserve-staged-models", namespace="kserve",
                       names=["*-predictor", "*-predictor-*"]),
        ModelException(name="guardrail-llm-d-staged-models", namespace="llm-d", names=["*-kserve", "*-kserve-*"]),
    ]


class ApprovedModelsPolicy(GuardrailPolicy):
    """3. The model a server loads is on this list."""

    exceptions: list[ModelException] = Field(default_factory=_default_model_exceptions)
    """Operator-staged models: PolicyExceptions for the operator's workloads in its own namespace (docs/guardrails.md)."""

    @field_validator("exceptions")
    @classmethod
    def _unique_exceptions(cls, v: list[ModelException]) -> list[ModelException]:
        no_duplicates([e.name for e in v], "exception name")
        return v

    models: list[str] = Field(
        default_factory=lambda: ["meta-llama/llama-3.1-8b-instruct", "mistralai/mistral-7b-instruct-v*"]
    )
    """Approved `org/name` (matched exactly, case-insensitively); a trailing `-v*` admits numeric version suffixes."""

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        out = [m.strip().lower() for m in v]
        for m in out:
            if not _MODEL.fullmatch(m):
                raise ValueError(
                    f"model {m!r} is not `org/name` (optionally ending in `-v*` for version suffixes); "
                    "write it as on Hugging Face, e.g. meta-llama/llama-3.1-8b-instruct"
                )
        return no_duplicates(out, "model")


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


class BaselineException(_CatalogException):
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
        no_duplicates([e.name for e in v], "exception name")
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
        return no_duplicates(out, "capability")


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
            if not _REGISTRY.fullmatch(r) or "/" not in r.rstrip("/") and not r.endswith("/"):
                raise ValueError(
                    f"registry prefix {r!r} must be a host with an optional path, without scheme, "
                    "e.g. europe-docker.pkg.dev/my-project/ or docker.io/vllm/vllm-openai"
                )
        return no_duplicates(v, "registry prefix")


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
            if not re.fullmatch(r"^[a-z0-9.*?-]+$", g) or not g.strip("*?"):
                raise ValueError(f"{g!r} is not a Secret name glob (lowercase letters, digits, '-', '.', '*', '?'; "
                                 "not only wildcards)")
        return no_duplicates(v, "pattern")

    @model_validator(mode="after")
    def _version_is_a_model_annotation(self) -> "OwnershipPolicy":
        if self.version_annotation not in self.model_annotations:
            raise ValueError(f"versionAnnotation {self.version_annotation!r} is not one of modelAnnotations")
        return self

    @field_validator("required_labels", "model_annotations")
    @classmethod
    def _keys(cls, v: list[str], info: ValidationInfo) -> list[str]:
        label_map({k: "" for k in v}, to_camel(info.field_name or ""))
        return no_duplicates(v, "key")

    @field_validator("inference_labels")
    @classmethod
    def _inference(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("inferenceLabels is empty: no workload would count as inference")
        return label_map(v, "inferenceLabels")


class ReserveAcceleratorNodesPolicy(GuardrailPolicy):
    """9. Only these service accounts may run Pods that can land on accelerator nodes (every namespace)."""

    namespaces: Optional[list[str]] = None
    """Namespaces in scope; default: every namespace but `excludeNamespaces` (not `guardrails.namespaces`)."""
    allowed_service_accounts: list[str] = Field(default_factory=list)
    """`namespace/name` of each approved service account."""
    exclude_namespaces: NamespaceList = Field(
        default_factory=lambda: ["kube-system", "kube-public", "kube-node-lease", "kyverno", "gmp-system"])
    """Namespaces left out. The scope is every namespace (nodes are shared) unless `namespaces` is set."""

    @field_validator("allowed_service_accounts")
    @classmethod
    def _sas(cls, v: list[str]) -> list[str]:
        for sa in v:
            ns, sep, name = sa.partition("/")
            if not sep or not DNS_LABEL.fullmatch(ns) or not re.fullmatch(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", name):
                raise ValueError(f"service account {sa!r} must be written namespace/name, e.g. serving/vllm")
        return no_duplicates(v, "service account")


class EgressDestination(ConfigModel):
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
        return v if v is None else ipv4_cidr(v)

    @field_validator("namespace_selector", "pod_selector")
    @classmethod
    def _peer_labels(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return label_map(v, to_camel(info.field_name or ""))

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
        return port_list(v, "egress")


class EgressLockdownPolicy(ConfigModel):
    """10. Generated, synchronized NetworkPolicy: DNS (the paths of `clusterDns`) plus configured destinations only."""

    enabled: bool = True
    """Render this policy (when `guardrails.enabled`)."""
    namespace_selector: dict[str, str] = Field(default_factory=lambda: {"llm-platform/egress-lockdown": "true"})
    """Namespaces (by label) that get the lockdown NetworkPolicy."""
    allowed_egress: list[EgressDestination] = Field(default_factory=list)
    """Destinations allowed besides DNS."""

    @model_validator(mode="before")
    @classmethod
    def _dns_keys_moved(cls, data: Any) -> Any:
        # The cluster's DNS paths are one fact of the stack (`clusterDns`), read by every egress-locked policy.
        if isinstance(data, dict):
            moved = [k for k in _MOVED_DNS_KEYS if k in data]
            if moved:
                keys = " and ".join(f"`guardrails.egressLockdown.{k}`" for k in moved)
                raise ValueError(f"{keys}: removed key{'s' if len(moved) > 1 else ''}; the lockdown opens the cluster's DNS paths from `clusterDns`, "
                                 "as every egress-locked policy does: set clusterDns.nodeLocalDnsCache / "
                                 "clusterDns.cloudDns instead")
        return data

    @field_validator("namespace_selector")
    @classmethod
    def _sel(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("namespaceSelector is empty: it would lock down every namespace; name a label")
        return label_map(v, "namespaceSelector")


class GuardrailsConfig(ConfigModel):
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
        return scope_namespaces(v, "remove the key to use serving + tenants")

    @model_validator(mode="after")
    def _exception_names(self) -> "GuardrailsConfig":
        # Every PolicyException lives in the kyverno namespace: one name, one object.
        names = [e.name for e in self.security_baseline.exceptions] + [e.name for e in self.approved_models.exceptions]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"PolicyException name(s) {dup} used in both securityBaseline.exceptions and "
                             "approvedModels.exceptions; rename one")
        return self
