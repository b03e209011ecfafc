"""SR2 settings (`kyverno`): the Kyverno install, the accelerators only Kueue may admit, and whom the policy trusts."""

from __future__ import annotations

import os
import re
from typing import Literal, Optional

from pydantic import Field, field_validator

from components.config.base import SA_USER, ConfigModel, no_duplicates, service_account_user

_RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")

# Operator namespaces a tenant may never be named after: a service account there could carry the
# user name of a trusted controller (require-kueue-queue-name trusts controllers by user name).
# The namespaces of every configured `kyverno.trustedControllers` identity are refused as well.
OPERATOR_NAMESPACES = frozenset(
    {"kuberay-system", "jobset-system", "lws-system", "kueue-system", "kubeflow", "kubeflow-system",
     "mpi-operator", "appwrapper-system"}
)


class TrustedControllers(ConfigModel):
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
    def _sa(cls, v: str) -> str:
        return service_account_user(v)

    def namespaces(self) -> set[str]:
        """Namespaces of all trusted identities."""
        return {m.group(1) for v in self.model_dump().values() if (m := SA_USER.fullmatch(v))}


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


class KueueConfig(ConfigModel):
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
        return no_duplicates(v, "framework")

    def enabled(self) -> set[str]:
        """The frameworks Kueue runs, with the ones it enables implicitly (`pod`)."""
        out = set(self.frameworks)
        if out & set(KUEUE_IMPLIES_POD):
            out.add("pod")
        return out


class KyvernoInstall(ConfigModel):
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


class KyvernoConfig(ConfigModel):
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
            if not _RESOURCE_NAME.fullmatch(r):
                raise ValueError(f"{r!r} is not an extended resource name; write it like nvidia.com/gpu")
        return no_duplicates(v, "accelerator resource")

    @field_validator("accelerator_resource_patterns")
    @classmethod
    def _accelerator_patterns(cls, v: list[str]) -> list[str]:
        for r in v:
            if not _RESOURCE_PATTERN.fullmatch(r):
                raise ValueError(
                    f"{r!r} is not a resource-name pattern; write a prefix ending in one `*` after the "
                    "domain, like nvidia.com/mig-*"
                )
        return no_duplicates(v, "accelerator resource pattern")

    failure_action: Literal["Enforce", "Audit"] = "Enforce"
    """Enforce rejects offending workloads; Audit only reports them."""
    admission_replicas: int = Field(3, ge=1, le=10)
    """Admission controller replicas; 3+ gives a PodDisruptionBudget and zone spread."""
    create_tenant_namespaces: bool = False
    """Create the tenant namespaces as Namespace resources, adopting those that exist (never deleted); false: patch
    the labels onto namespaces that must exist (`existingCluster` only)."""
    install: KyvernoInstall = Field(default_factory=KyvernoInstall)
    """How the chart is installed (defaults: the chart repository, with every wait; other values only for `make e2e`)."""
