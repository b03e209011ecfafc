"""SR2: the generator of the ClusterPolicy `require-kueue-queue-name`, from two tables.

Everything the policy knows about Kueue integrations lives in :data:`WORKLOADS` (one line per
kind: where the queue label and the pod specs live, which field suspends it) and :data:`TRUST`
(one line per parent -> child edge: which controller creates the child). Adding a Kueue
integration is one line in ``WORKLOADS`` plus its edges in ``TRUST``.

``python -m components.kueue_policy`` writes the policy file,
``policies/kyverno/require-kueue-queue-name/require-kueue-queue-name.yaml`` (``render_policy(KyvernoConfig())``;
never edited by hand, a test keeps it equal to this module's output), and its ValidatingPolicy twin. The stack
does not call the generator: like every policy, it loads the file and sets its parameters
(components/policy_model.py), which this module defines once for both: the CEL variables of
:func:`parameters` (accelerators, trusted controllers, Kueue frameworks, DRA claims), the webhook
matchConditions of :func:`match_conditions`, the rule's excluded namespaces and the failure action. A test
proves that the file with a config's parameters is this module's output for that config
(tests/test_policy_model.py). See docs/decisions/0002-sr2-kueue-bypasses.md.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import yaml

from components import pod_templates
from components.config import KueueConfig, KyvernoConfig, TrustedControllers
from components.platform_facts import DEFAULT_PROTECTED_NAMESPACES, KUEUE_MANAGED_LABEL, QUEUE_LABEL
from components.policy_model import cel_literal, policy_file

POLICY_NAME = "require-kueue-queue-name"
RULE_NAME = "require-kueue-admission"
ADMISSION_GATE = "kueue.x-k8s.io/admission"
# Every scheduling gate under this prefix is Kueue's (admission, elastic-job, topology, ...).
KUEUE_GATE_PREFIX = "kueue.x-k8s.io/"
ELASTIC_GATE = "kueue.x-k8s.io/elastic-job"
# Kueue's workload-slicing switch (pkg/workloadslicing EnabledAnnotationKey/Value): an elastic job.
ELASTIC_ANNOTATION = "kueue.x-k8s.io/elastic-job"
# Always an accelerator request: DRA extended resources (KEP-5004).
DRA_EXTENDED_PREFIX = "deviceclass.resource.kubernetes.io/"
# Env vars the NVIDIA container toolkit reads to inject devices; only these values inject none.
GPU_DEVICE_ENV_VARS = ("NVIDIA_VISIBLE_DEVICES",)
GPU_ENV_NO_DEVICE_VALUES = ("", "void", "none")
ROOT = pathlib.Path(__file__).resolve().parent.parent
POLICY_FILE = policy_file(POLICY_NAME)


@dataclass(frozen=True)
class Workload:
    """A Kueue integration (or a kind whose children are)."""

    match: str
    """Kyverno `kinds` entry (group/version/Kind; `*` version for CRDs with several)."""
    key: str
    """group/Kind as in `request.kind` and ownerReferences (core group empty: `/Pod`)."""
    pod_specs: str
    """CEL list of the pod specs of object `o` (containers, initContainers, resourceClaims)."""
    queue_label: str = "metadata"
    """Path (CEL optional chain) of the metadata Kueue reads the queue-name label from."""
    suspend: Optional[str] = None
    """Path (CEL optional chain) of the suspend flag Kueue flips on admission, if the kind has one."""
    opaque: bool = False
    """Pod specs are not in the object (runtime templates, embedded raw objects): always needs the label."""
    kueue_parent: bool = True
    """Kueue admits the children of this kind through it (its children need no queue label)."""
    framework: Optional[str] = None
    """Kueue integration (`integrations.frameworks` name) that manages this kind; when it is not enabled
    (config `kyverno.kueue.frameworks`), accelerated objects of the kind are denied unless their controller
    owner is an enabled Kueue parent."""
    version: str = "v1"
    """The API version Kueue's integration is built on (its `gvk`): Kueue knows an owner only by this exact
    apiVersion (`ownerReferenceMatchingGVK`), so an owner at another version is not a Kueue parent."""
    scale: bool = False
    """The kind has a `/scale` subresource (built in, or the CRD's `subresources.scale`)."""

    @property
    def parent_id(self) -> str:
        """apiVersion/Kind as in a controller ownerReference (core group: `v1/Pod`)."""
        group, kind = self.key.split("/")
        return f"{group}/{self.version}/{kind}" if group else f"{self.version}/{kind}"


def _tmpl(path: str) -> str:
    return f"[o.?{path}.orValue({{}})]"


def _builtin(kind: str, **kw: Any) -> Workload:
    """A built-in kind: its Kyverno kind and pod template path come from components/pod_templates.py."""
    (entry,) = [k for k in pod_templates.POD_TEMPLATE_KINDS if k.name == kind]
    group = entry.kind.split("/")[0] if "/" in entry.kind else ""
    return Workload(entry.kind, f"{group}/{kind}", _tmpl(".?".join(entry.keys + ("spec",))), **kw)


def _kubeflow(kind: str, replica_specs: str, scale: bool = False) -> Workload:
    """A Kubeflow training-operator v1 job: a map of replica types to pod templates, runPolicy.suspend."""
    return Workload(f"kubeflow.org/*/{kind}", f"kubeflow.org/{kind}",
                    f"o.?spec.?{replica_specs}.orValue({{}}).map(k, "
                    f"o.spec.{replica_specs}[k].?template.?spec.orValue({{}}))",
                    suspend="spec.?runPolicy.?suspend", framework=f"kubeflow.org/{kind.lower()}", scale=scale)


def _ray_cluster_specs(spec: str) -> str:
    return (f"[o.?{spec}.?headGroupSpec.?template.?spec.orValue({{}})] + "
            f"o.?{spec}.?workerGroupSpecs.orValue([]).map(w, w.?template.?spec.orValue({{}}))")


# EDIT HERE to add a Kueue integration. `version`: Kueue v0.18.1's `gvk` of the integration
# (pkg/controller/jobs/**/*_controller.go; the same in v0.19.2). `scale`: kind has a /scale subresource
# (apps: StatefulSet, Deployment; CRDs: LeaderWorkerSet; training-operator v1.9 PyTorchJob, PaddleJob, JAXJob).
WORKLOADS: tuple[Workload, ...] = (
    _builtin("Pod", framework="pod"),
    _builtin("Job", suspend="spec.?suspend", framework="batch/job"),
    _builtin("CronJob", queue_label="spec.?jobTemplate.?metadata", kueue_parent=False, framework="batch/job"),
    _builtin("Deployment", kueue_parent=False, framework="deployment", scale=True),
    _builtin("StatefulSet", framework="statefulset", scale=True),
    Workload("jobset.x-k8s.io/*/JobSet", "jobset.x-k8s.io/JobSet",
             "o.?spec.?replicatedJobs.orValue([]).map(r, r.?template.?spec.?template.?spec.orValue({}))",
             suspend="spec.?suspend", framework="jobset.x-k8s.io/jobset", version="v1alpha2"),
    Workload("ray.io/*/RayJob", "ray.io/RayJob",
             "[o.?spec.?submitterPodTemplate.?spec.orValue({})] + " + _ray_cluster_specs("spec.?rayClusterSpec"),
             suspend="spec.?suspend", framework="ray.io/rayjob"),
    Workload("ray.io/*/RayCluster", "ray.io/RayCluster", _ray_cluster_specs("spec"),
             suspend="spec.?suspend", framework="ray.io/raycluster"),
    Workload("ray.io/*/RayService", "ray.io/RayService", _ray_cluster_specs("spec.?rayClusterSpec"),
             suspend="spec.?rayClusterSpec.?suspend", framework="ray.io/rayservice"),
    Workload("leaderworkerset.x-k8s.io/*/LeaderWorkerSet", "leaderworkerset.x-k8s.io/LeaderWorkerSet",
             "[o.?spec.?leaderWorkerTemplate.?leaderTemplate.?spec.orValue({}), "
             "o.?spec.?leaderWorkerTemplate.?workerTemplate.?spec.orValue({})]",
             framework="leaderworkerset.x-k8s.io/leaderworkerset", scale=True),
    _kubeflow("PyTorchJob", "pytorchReplicaSpecs", scale=True),
    Workload("kubeflow.org/*/MPIJob", "kubeflow.org/MPIJob",
             "o.?spec.?mpiReplicaSpecs.orValue({}).map(k, o.spec.mpiReplicaSpecs[k].?template.?spec.orValue({}))",
             suspend="spec.?runPolicy.?suspend", framework="kubeflow.org/mpijob", version="v2beta1"),
    _kubeflow("TFJob", "tfReplicaSpecs"),
    _kubeflow("XGBoostJob", "xgbReplicaSpecs"),
    _kubeflow("PaddleJob", "paddleReplicaSpecs", scale=True),
    _kubeflow("JAXJob", "jaxReplicaSpecs", scale=True),
    Workload("trainer.kubeflow.org/*/TrainJob", "trainer.kubeflow.org/TrainJob",
             "[dyn({'containers': [{'env': o.?spec.?trainer.?env.orValue([]), "
             "'resources': o.?spec.?trainer.?resourcesPerNode.orValue({})}]})]",
             suspend="spec.?suspend", opaque=True, framework="trainer.kubeflow.org/trainjob", version="v1alpha1"),
    Workload("workload.codeflare.dev/*/AppWrapper", "workload.codeflare.dev/AppWrapper", "[]",
             suspend="spec.?suspend", opaque=True, framework="workload.codeflare.dev/appwrapper", version="v1beta2"),
)

# Owner kinds Kueue does not know: their children are top-level workloads for Kueue.
EXTRA_OWNERS = {"apps/v1/ReplicaSet": False}


@dataclass(frozen=True)
class Edge:
    """A controller that creates `child` objects with a controller ownerReference to `owner`."""

    child: str
    """group/Kind of the created object (`*`: any kind)."""
    owner: str
    """group/Kind of the controlling owner."""
    controller: str
    """Field of :class:`TrustedControllers` holding the controller's user name."""


# EDIT HERE: who creates which child of which parent.
TRUST: tuple[Edge, ...] = (
    Edge("/Pod", "batch/Job", "job"),
    Edge("/Pod", "apps/ReplicaSet", "replica_set"),
    Edge("/Pod", "apps/StatefulSet", "stateful_set"),
    Edge("/Pod", "ray.io/RayCluster", "kuberay"),
    *(Edge("/Pod", f"kubeflow.org/{k}", "kubeflow_training")
      for k in ("PyTorchJob", "MPIJob", "TFJob", "XGBoostJob", "PaddleJob", "JAXJob")),
    Edge("/Pod", "kubeflow.org/MPIJob", "mpi_operator"),
    Edge("batch/Job", "batch/CronJob", "cron_job"),
    Edge("batch/Job", "jobset.x-k8s.io/JobSet", "jobset"),
    Edge("batch/Job", "ray.io/RayJob", "kuberay"),
    Edge("batch/Job", "kubeflow.org/MPIJob", "mpi_operator"),
    Edge("ray.io/RayCluster", "ray.io/RayJob", "kuberay"),
    Edge("ray.io/RayCluster", "ray.io/RayService", "kuberay"),
    Edge("apps/StatefulSet", "leaderworkerset.x-k8s.io/LeaderWorkerSet", "lws"),
    Edge("apps/StatefulSet", "/Pod", "lws"),
    Edge("jobset.x-k8s.io/JobSet", "trainer.kubeflow.org/TrainJob", "trainer"),
    Edge("*", "workload.codeflare.dev/AppWrapper", "appwrapper"),
)


def kueue_parents() -> list[str]:
    """Owners (apiVersion/Kind, as Kueue matches them) whose children Kueue admits through the parent (no
    queue label needed). An owner at another version of the same kind is not one: Kueue does not know it.

    Kinds of disabled frameworks stay here: an accelerated object of such a kind is only admitted as the
    child of an enabled Kueue parent (:func:`disabled_kinds`), so its own children are inside that quota."""
    out = [w.parent_id for w in WORKLOADS if w.kueue_parent]
    out += [k for k, managed in EXTRA_OWNERS.items() if managed]
    return sorted(set(out))


def enabled_parents(kueue: KueueConfig) -> list[str]:
    """Kueue parents (apiVersion/Kind) whose framework Kueue runs (`kyverno.kueue.frameworks`)."""
    enabled = kueue.enabled()
    return sorted({w.parent_id for w in WORKLOADS if w.kueue_parent and w.framework in enabled})


def scaled_kinds() -> list[str]:
    """Kueue parents with a /scale subresource: scaling one that is itself a Kueue child (an LWS's
    StatefulSet, an AppWrapper's PyTorchJob) adds Pods its controller creates outside Kueue's count.
    Deployments are not here: their Pods come through a ReplicaSet, so each needs the label and
    Kueue's gate (`ungatedAtCreate`) however many there are."""
    return sorted(w.key for w in WORKLOADS if w.scale and w.kueue_parent)


def disabled_kinds(kueue: KueueConfig) -> list[str]:
    """Kinds whose Kueue framework is off: accelerated objects of them are denied unless an enabled Kueue
    parent owns them. Pods are judged by Kueue's own gate instead (`ungatedAtCreate`)."""
    enabled = kueue.enabled()
    return sorted({w.key for w in WORKLOADS if w.framework and w.framework not in enabled and w.key != "/Pod"})


# ------------------------------------------------------------------ CEL pieces

def _q(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]"


def _dispatch(kind: str, branches: Sequence[tuple[str, str]], default: str) -> str:
    """`kind == 'a' ? <expr a> :\n kind == 'b' ? <expr b> :\n default`."""
    return "\n".join([f"{kind} == {_q(k)} ? {v} :" for k, v in branches] + [default])


def _pod_specs(kind: str) -> str:
    return _dispatch(kind, [(w.key, w.pod_specs) for w in WORKLOADS], "[]")


def _queue_name(path: str) -> str:
    return f"o.?{path}.?labels[?{_q(QUEUE_LABEL)}].orValue('')"


def _suspended(path: str) -> str:
    return f"o.?{path}.orValue(false) == true"


def _containers(s: str) -> str:
    return f"({s}.?containers.orValue([]) + {s}.?initContainers.orValue([]) + {s}.?ephemeralContainers.orValue([]))"


def _requests_accelerator(c: str, accel: str, prefixes: str) -> str:
    # Quantities stay `dyn` (the API server sends strings; an int default such as orValue(0) would type
    # the list as list(int) and bind string() to its int overload, which fails on a real quantity).
    return (f"[{c}.?resources.?requests.orValue({{}}), {c}.?resources.?limits.orValue({{}})].exists(m, "
            f"m.exists(k, (k in {accel} || {prefixes}.exists(p, k.startsWith(p))) && "
            f"string(m[k]) != '0'))")


def _prefixes(config: KyvernoConfig) -> list[str]:
    """Resource-name prefixes that count as accelerators: the config's patterns, DRA extended resources."""
    return sorted({p[:-1] for p in config.accelerator_resource_patterns} | {DRA_EXTENDED_PREFIX})


def _has_claims(s: str) -> str:
    return (f"(size({s}.?resourceClaims.orValue([])) > 0 || "
            f"{_containers(s)}.exists(c, size(c.?resources.?claims.orValue([])) > 0))")


def _gpu_env(c: str) -> str:
    return (f"{c}.?env.orValue([]).exists(e, e.?name.orValue('') in {_list(GPU_DEVICE_ENV_VARS)} && "
            f"(e.?valueFrom.hasValue() || !(e.?value.orValue('') in {_list(GPU_ENV_NO_DEVICE_VALUES)})))")


def _gates(s: str) -> str:
    """Names of the scheduling gates of pod spec `s`."""
    return f"{s}.?schedulingGates.orValue([]).map(x, x.?name.orValue(''))"


def _owner_key(r: str) -> str:
    return (f"(({r}.?apiVersion.orValue('').contains('/') ? {r}.apiVersion.split('/')[0] : '') "
            f"+ '/' + {r}.?kind.orValue(''))")


def _owner_gvk(r: str) -> str:
    """apiVersion/Kind of an ownerReference, exactly as Kueue compares it (`ownerReferenceMatchingGVK`)."""
    return f"({r}.?apiVersion.orValue('') + '/' + {r}.?kind.orValue(''))"


def _owner_id(r: str) -> str:
    """The whole controller reference: apiVersion, kind, name and uid."""
    return (f"({r}.?apiVersion.orValue('') + '/' + {r}.?kind.orValue('') + '/' + {r}.?name.orValue('') + "
            f"'/' + {r}.?uid.orValue(''))")


def _controller_refs(o: str) -> str:
    return f"{o}.?metadata.?ownerReferences.orValue([]).filter(r, r.?controller.orValue(false) == true)"


def _opaque_list() -> str:
    return _list([w.key for w in WORKLOADS if w.opaque])


def trusted_edges(ids: TrustedControllers) -> dict[str, list[str]]:
    """User name -> the 'child<-owner' edges it may create (from :data:`TRUST`)."""
    users: dict[str, set[str]] = {}
    for e in TRUST:
        users.setdefault(getattr(ids, e.controller), set()).add(f"{e.child}<-{e.owner}")
    return {u: sorted(v) for u, v in sorted(users.items())}


def relevant_condition(config: KyvernoConfig) -> str:
    """Webhook matchCondition: a scale request (its Scale body shows no pods), or the object or old object
    asks for accelerators, devices or claims."""
    kind = "request.kind.group + '/' + request.kind.kind"
    accel = _list(config.accelerator_resources)
    specs = _pod_specs("rk")
    return (
        f"[{kind}].exists(rk, rk in {_opaque_list()} || request.?subResource.orValue('') == 'scale' ||\n"
        "[object, oldObject].exists(o, o != null && (\n"
        f"{specs}\n"
        f").exists(s, {_has_claims('s')} || {_containers('s')}.exists(c,\n"
        f"  {_requests_accelerator('c', accel, _list(_prefixes(config)))} || {_gpu_env('c')}))))"
    )


def namespace_condition(namespaces: Sequence[str]) -> str:
    """Webhook matchCondition: not one of the platform's own namespaces (matchConditions cannot read labels)."""
    return f"!(request.namespace in {_list(sorted(namespaces))})"


# ---------------------------------------------------------------- parameters

def parameters(config: KyvernoConfig) -> dict[str, Any]:
    """The policy's CEL variables that carry config, by name: the generator writes their literals and the
    stack sets them on the policy file (components/policy_model.py), so both give the same policy."""
    return {
        "acceleratorResources": list(config.accelerator_resources),
        "acceleratorPrefixes": _prefixes(config),
        # EDIT IN CONFIG (kyverno.trustedControllers): user name -> 'child<-owner' edges it may create.
        "trustedControllers": trusted_edges(config.trusted_controllers),
        # EDIT IN CONFIG (kyverno.kueue.frameworks): what Kueue runs.
        "enabledParents": enabled_parents(config.kueue),
        "disabledKinds": disabled_kinds(config.kueue),
        "kueueController": config.trusted_controllers.kueue,
        # kyverno.resourceClaimsThroughKueue: DRA claims count as accelerators (label needed) instead of denied.
        "claimsThroughKueue": config.resource_claims_through_kueue,
    }


def match_conditions(config: KyvernoConfig, platform_namespaces: Sequence[str]) -> dict[str, str]:
    """The webhook matchConditions that carry config, by name."""
    return {"not-platform-namespace": namespace_condition(platform_namespaces),
            "accelerator-request": relevant_condition(config)}


# -------------------------------------------------------------------- policy

def _variables(config: KyvernoConfig) -> list[dict[str, str]]:
    accel_expr = _requests_accelerator("c", "variables.acceleratorResources", "variables.acceleratorPrefixes")
    accelerated = (f"{_containers('s')}.exists(c, {accel_expr}) ||\n"
                   f"  variables.claimsThroughKueue && {_has_claims('s')}")
    two = "size(variables.objects) == 2"
    kueue_gate = f"g.startsWith({_q(KUEUE_GATE_PREFIX)})"
    params = parameters(config)
    v = [
        *[(name, cel_literal(value)) for name, value in params.items()],
        ("kueueParents", _list(kueue_parents())),
        ("kind", "request.kind.group + '/' + request.kind.kind"),
        ("objects", "oldObject == null ? [object] : [object, oldObject]"),
        ("podSpecs", "variables.objects.map(o,\n" + _pod_specs("variables.kind") + ")"),
        ("queueNames", "variables.objects.map(o,\n" + _dispatch(
            "variables.kind", [(w.key, _queue_name(w.queue_label)) for w in WORKLOADS if w.queue_label != "metadata"],
            _queue_name("metadata")) + ")"),
        ("owners", f"variables.objects.map(o, {_controller_refs('o')}.map(r, {_owner_key('r')}))"),
        ("ownerIds", f"variables.objects.map(o, {_controller_refs('o')}.map(r, {_owner_id('r')}))"),
        ("ownerGvks", f"variables.objects.map(o, {_controller_refs('o')}.map(r, {_owner_gvk('r')}))"),
        ("accelerated", f"variables.podSpecs.map(specs, variables.kind in {_opaque_list()} ||\n"
                        f"  specs.exists(s, {accelerated}))"),
        ("gpuEnv", f"variables.podSpecs.map(specs, specs.exists(s, {_containers('s')}.exists(c,\n"
                   f"  {_gpu_env('c')})))"),
        ("claims", f"variables.podSpecs.map(specs, specs.exists(s, {_has_claims('s')}))"),
        ("suspended", "variables.objects.map(o,\n" + _dispatch(
            "variables.kind", [(w.key, _suspended(w.suspend)) for w in WORKLOADS if w.suspend], "false") + ")"),
        # Owner version: Kueue knows a parent only at its integration's exact apiVersion.
        ("parentOwned", "variables.ownerGvks.map(os, size(os) > 0 && os[0] in variables.kueueParents)"),
        ("needsLabel", "[0, 1].filter(i, i < size(variables.objects)).map(i,\n"
                       "  variables.accelerated[i] && variables.queueNames[i] == '' && !variables.parentOwned[i])"),
        ("trustedEdges", "variables.trustedControllers[?request.userInfo.username].orValue([])"),
        ("ownerTrusted", "size(variables.owners[0]) > 0 && (\n"
                         "  (variables.kind + '<-' + variables.owners[0][0]) in variables.trustedEdges ||\n"
                         "  ('*<-' + variables.owners[0][0]) in variables.trustedEdges)"),
        # Finding 3 (issue 21): the whole controller reference (kind, name, uid) must stay the same.
        ("checkOwner", "variables.accelerated[0] && size(variables.owners[0]) > 0 &&\n"
                       f"  !({two} && variables.ownerIds[0] == variables.ownerIds[1] && variables.accelerated[1])"),
        ("newLabelViolation", f"variables.needsLabel[0] && !({two} && variables.needsLabel[1])"),
        ("newGpuEnv", f"variables.gpuEnv[0] && !({two} && variables.gpuEnv[1])"),
        ("newClaims", f"!variables.claimsThroughKueue && variables.claims[0] && !({two} && variables.claims[1])"),
        # Finding 2: any kueue.x-k8s.io/* gate, each on its own: fewer pod specs carry it than before.
        ("gateRemoved", f"{two} && variables.accelerated[0] &&\n"
                        f"  variables.podSpecs[1].exists(s, {_gates('s')}.exists(g, {kueue_gate} &&\n"
                        f"    size(variables.podSpecs[1].filter(t, g in {_gates('t')})) >\n"
                        f"    size(variables.podSpecs[0].filter(t, g in {_gates('t')}))))"),
        # Finding 1: a Pod Kueue manages on its own (no Kueue parent) arrives gated by Kueue's pod webhook;
        # ungated, Kueue found a (possibly forged) managed ancestor through an owner Kyverno never sees.
        ("ungatedAtCreate", f"variables.kind == '/Pod' && size(variables.objects) == 1 && variables.accelerated[0] &&\n"
                            f"  !variables.parentOwned[0] &&\n"
                            f"  !variables.podSpecs[0].exists(s, {_q(ADMISSION_GATE)} in {_gates('s')})"),
        ("unsuspended", f"{two} && variables.accelerated[0] && variables.suspended[1] && !variables.suspended[0]"),
        # Finding 6: a child Kueue admitted through its parent changes only by its controller (or Kueue);
        # elastic children (Kueue's annotation, every pod template gated) scale through workload slices.
        ("elastic", f"variables.objects.all(o, o.?metadata.?annotations[?{_q(ELASTIC_ANNOTATION)}]"
                    f".orValue('') == 'true') &&\n"
                    f"  size(variables.podSpecs[0]) > 0 && variables.podSpecs[0].all(s, {_q(ELASTIC_GATE)} in {_gates('s')})"),
        ("childRespec", f"{two} && variables.kind != '/Pod' && (variables.accelerated[0] || variables.accelerated[1]) &&\n"
                        "  variables.parentOwned[0] &&\n"
                        "  variables.objects[0].?spec.orValue({}) != variables.objects[1].?spec.orValue({}) &&\n"
                        "  !variables.elastic"),
        # Finding 4: a kind whose Kueue framework is off is only admitted as the child of an enabled parent.
        ("disabledFramework", "[0, 1].filter(i, i < size(variables.objects)).map(i,\n"
                              "  variables.kind in variables.disabledKinds && variables.accelerated[i] &&\n"
                              "  !(size(variables.ownerGvks[i]) > 0 && variables.ownerGvks[i][0] in variables.enabledParents))"),
        ("newDisabledFramework", f"variables.disabledFramework[0] && !({two} && variables.disabledFramework[1])"),
        ("byKueue", "request.userInfo.username == variables.kueueController"),
        # A write to <kind>/scale: its Scale body names no owner, so only a trusted controller or Kueue may
        # scale these kinds (the tenant changes spec.replicas on the object, which `childRespec` judges).
        # Kyverno's ClusterPolicy CEL gets the top-level kind and no request.subResource
        # (validate_cel.go), so the body's shape tells a Scale: a spec with nothing but replicas.
        ("scaleWrite", f"request.operation == 'UPDATE' && (request.?subResource.orValue('') == 'scale' ||\n"
                       f"  variables.kind in {_list(scaled_kinds())} &&\n"
                       "  object.?spec.orValue({}).all(k, k == 'replicas'))"),
    ]
    return [{"name": n, "expression": e} for n, e in v]


MESSAGES = {
    "gpuEnv": (
        "containers in Kueue-managed namespaces must not set NVIDIA_VISIBLE_DEVICES (other than "
        "'void', 'none' or empty): the NVIDIA container toolkit would inject GPUs that no "
        "ClusterQueue counts; request accelerators as resources and set the label "
        f"{QUEUE_LABEL} instead"),
    "claims": (
        "DRA resourceClaims are not admitted in Kueue-managed namespaces (Kueue does not count "
        f"them here); request accelerators as resources with the label {QUEUE_LABEL}"),
    "owner": (
        "accelerator workloads with a controller ownerReference are only admitted from the "
        "controller trusted for that owner kind, and only that controller may set or change the "
        "controller reference (kind, name, uid): a forged or re-pointed owner would skip Kueue; remove "
        f"the ownerReference and set the label {QUEUE_LABEL}"),
    "label": (
        "accelerator workloads in Kueue-managed namespaces must set a non-empty label "
        f"{QUEUE_LABEL} (the name of a LocalQueue in this namespace) where Kueue reads it: "
        "metadata.labels of the workload (CronJob: spec.jobTemplate.metadata.labels), or be "
        "created by a trusted controller of a Kueue-managed parent"),
    "framework": (
        "this kind's Kueue integration is not enabled in this cluster (kyverno.kueue.frameworks), so "
        "Kueue would not hold it in quota: accelerator workloads of this kind are only admitted as the "
        "child of an enabled Kueue workload (e.g. inside an AppWrapper); use an enabled kind with the "
        f"label {QUEUE_LABEL}"),
    "ungated": (
        f"an accelerator Pod that Kueue manages on its own must arrive gated ({ADMISSION_GATE}) by "
        "Kueue's pod webhook; this one was not, so Kueue took it for the child of another "
        "Kueue workload (e.g. a ReplicaSet whose owner points at a Job) and would never count it; "
        f"set the label {QUEUE_LABEL} on a Pod, Deployment or Job without such an owner"),
    "gate": (
        f"only Kueue may remove its scheduling gates ({KUEUE_GATE_PREFIX}*: admission, elastic-job, "
        f"topology, ...) from an accelerator workload; wait for the workload (label {QUEUE_LABEL}) "
        "to be admitted"),
    "suspend": (
        "only Kueue (or the controller of a Kueue-managed parent) may unsuspend an accelerator "
        f"workload; wait for the workload (label {QUEUE_LABEL}) to be admitted"),
    "scale": (
        "the scale subresource of this kind is only for its trusted controller and Kueue in Kueue-managed "
        "namespaces (a Scale names no owner, and scaling a child Kueue admitted through its parent would "
        "run more Pods than the parent's quota); change spec.replicas on the object instead, or scale "
        f"the parent (label {QUEUE_LABEL})"),
    "respec": (
        "the spec of an accelerator workload that Kueue admitted through its parent (controller "
        "owner) may only be changed by that parent's controller or Kueue (more replicas would run "
        f"outside the parent's quota); change the parent (label {QUEUE_LABEL}) instead"),
}


def render_policy(config: Optional[KyvernoConfig] = None,
                  platform_namespaces: Sequence[str] = DEFAULT_PROTECTED_NAMESPACES) -> dict[str, Any]:
    """The ClusterPolicy for `config`: the generator's output (written to the policy file for the default
    config; the stack gets the same document by setting :func:`parameters` and the rest on that file).

    Scope is the namespace label `llm-platform/kueue-managed=true` (the rule's namespaceSelector, read by
    Kyverno). The platform's own model-serving namespaces (the stack's `networkPolicy.protectedNamespaces`)
    are never in scope: the rule excludes them, and the webhook's matchConditions keep them and requests
    without accelerators off Kyverno's path. See docs/decisions/0002-sr2-kueue-bypasses.md.
    """
    config = config or KyvernoConfig()
    platform_namespaces = list(platform_namespaces)
    conditions = [{"name": n, "expression": e} for n, e in match_conditions(config, platform_namespaces).items()]
    scope = {"namespaceSelector": {"matchLabels": {KUEUE_MANAGED_LABEL: "true"}}}
    kinds = ([w.match for w in WORKLOADS] + ["Pod/ephemeralcontainers"]
             + [f"{k.split('/')[1]}/scale" for k in scaled_kinds()])
    return {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {
            "name": POLICY_NAME,
            "annotations": {
                "policies.kyverno.io/title": "Require Kueue admission for accelerator workloads",
                "policies.kyverno.io/category": "Multi-Tenancy",
                "policies.kyverno.io/severity": "high",
                "policies.kyverno.io/subject": ", ".join(w.key.split("/")[1] for w in WORKLOADS),
                "policies.kyverno.io/minversion": "1.11.0",
                "kyverno.io/kyverno-version": "1.18.1",
                "kyverno.io/k8s-version": "1.30-1.34",
                # Autogen off: each kind keeps its queue label where Kueue reads it (WORKLOADS).
                "pod-policies.kyverno.io/autogen-controllers": "none",
                # Config-free: the stack sets only the parameters (parameters(), match_conditions(), the exclude).
                "policies.kyverno.io/description": (
                    "Rendered by components/kueue_policy.py; do not edit by hand. In namespaces "
                    f"labelled {KUEUE_MANAGED_LABEL}=true (but the platform's protected namespaces), "
                    "accelerator workloads (kyverno.acceleratorResources, kyverno.acceleratorResourcePatterns) "
                    f"must carry {QUEUE_LABEL} where Kueue reads it (Pods: and arrive gated by Kueue), or come "
                    "from the controller trusted for their controller owner, which alone may change that owner "
                    "or the child's spec; only Kueue lifts its gates or unsuspends; kinds whose Kueue "
                    "integration is off run only inside an enabled one; a controller owner counts as a Kueue "
                    "parent only at the apiVersion Kueue knows; the scale subresource of Kueue-parent kinds is "
                    "for trusted controllers and Kueue; NVIDIA_VISIBLE_DEVICES and DRA claims cannot bypass the "
                    "quota. UPDATEs are denied only when they introduce a violation. See "
                    "docs/decisions/0002-sr2-kueue-bypasses.md."),
            },
        },
        "spec": {
            "validationFailureAction": config.failure_action,
            "background": False,
            "webhookConfiguration": {
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
                "matchConditions": conditions,
            },
            "rules": [{
                "name": RULE_NAME,
                "match": {"any": [{"resources": {"kinds": kinds, "operations": ["CREATE", "UPDATE"], **scope}}]},
                # As policy_model.set_exclude writes it (no namespaces: no exclude block).
                **({"exclude": {"any": [{"resources": {"namespaces": platform_namespaces}}]}}
                   if platform_namespaces else {}),
                "validate": {
                    "message": MESSAGES["label"],
                    "cel": {
                        "variables": _variables(config),
                        "expressions": [
                            {"expression": "!variables.newGpuEnv", "message": MESSAGES["gpuEnv"]},
                            {"expression": "!variables.newClaims", "message": MESSAGES["claims"]},
                            {"expression": "!variables.checkOwner || variables.ownerTrusted",
                             "message": MESSAGES["owner"]},
                            {"expression": "!variables.newDisabledFramework", "message": MESSAGES["framework"]},
                            {"expression": "!variables.newLabelViolation", "message": MESSAGES["label"]},
                            {"expression": "!variables.ungatedAtCreate", "message": MESSAGES["ungated"]},
                            {"expression": "!variables.gateRemoved || variables.byKueue", "message": MESSAGES["gate"]},
                            {"expression": "!variables.unsuspended || variables.byKueue || variables.ownerTrusted",
                             "message": MESSAGES["suspend"]},
                            {"expression": "!variables.childRespec || variables.byKueue || variables.ownerTrusted",
                             "message": MESSAGES["respec"]},
                            {"expression": "!variables.scaleWrite || variables.byKueue || size(variables.trustedEdges) > 0",
                             "message": MESSAGES["scale"]},
                        ],
                    },
                },
            }],
        },
    }


VALIDATING_POLICY_FILE = POLICY_FILE.parent / "validatingpolicy" / f"{POLICY_NAME}.yaml"


def _resource_rules() -> list[dict[str, Any]]:
    """matchConstraints.resourceRules: one rule per API group, plural = lowercase kind + 's'."""
    groups: dict[str, list[str]] = {}
    for w in WORKLOADS:
        group, kind = w.key.split("/")
        groups.setdefault(group, []).append(kind.lower() + "s")
    groups[""].append("pods/ephemeralcontainers")
    for k in scaled_kinds():
        group, kind = k.split("/")
        groups[group].append(kind.lower() + "s/scale")
    return [{"apiGroups": [g], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": r}
            for g, r in groups.items()]


def render_validating_policy(config: Optional[KyvernoConfig] = None, failure_action: str = "Enforce",
                             platform_namespaces: Sequence[str] = DEFAULT_PROTECTED_NAMESPACES) -> dict[str, Any]:
    """The same policy as a `policies.kyverno.io/v1` ValidatingPolicy, for Kyverno >= 1.20 (where
    ClusterPolicy is removed). Same variables and validations; the webhook namespaceSelector now comes
    from the policy (kueue-managed, not the platform's namespaces), so no namespace-name matchCondition.
    Not deployed by the stack (Kyverno 1.18.1 keeps the ClusterPolicy).
    """
    config = config or KyvernoConfig()
    cluster_policy = render_policy(config, platform_namespaces)
    (rule,) = cluster_policy["spec"]["rules"]
    return {
        "apiVersion": "policies.kyverno.io/v1",
        "kind": "ValidatingPolicy",
        "metadata": {"name": POLICY_NAME, "annotations": {
            k: v for k, v in cluster_policy["metadata"]["annotations"].items()
            if k.startswith("policies.kyverno.io/") and k != "policies.kyverno.io/minversion"}},
        "spec": {
            "validationActions": ["Deny"] if failure_action == "Enforce" else ["Audit"],
            "failurePolicy": "Fail",
            "webhookConfiguration": {"timeoutSeconds": 10},
            "evaluation": {"background": {"enabled": False}},
            "autogen": {"podControllers": {"controllers": []}},
            "matchConstraints": {
                "resourceRules": _resource_rules(),
                "namespaceSelector": {
                    "matchLabels": {KUEUE_MANAGED_LABEL: "true"},
                    "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                          "values": list(platform_namespaces)}],
                },
            },
            "matchConditions": [c for c in cluster_policy["spec"]["webhookConfiguration"]["matchConditions"]
                                if c["name"] != "not-platform-namespace"],
            "variables": rule["validate"]["cel"]["variables"],
            "validations": rule["validate"]["cel"]["expressions"],
        },
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

HEADER = (
    "# GENERATED by components/kueue_policy.py from its WORKLOADS and TRUST tables with the default\n"
    "# config (KyvernoConfig()); do not edit. Regenerate: .venv/bin/python -m components.kueue_policy\n"
    "# The stack loads this file and sets its parameters from config (components/policy_model.py).\n"
)


def dump(policy: dict[str, Any], header: str = HEADER) -> str:
    return header + yaml.dump(policy, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def default_rendering() -> str:
    return dump(render_policy(KyvernoConfig()))


def default_validating_policy_rendering() -> str:
    return dump(render_validating_policy(KyvernoConfig()), HEADER.splitlines(keepends=True)[0]
                + HEADER.splitlines(keepends=True)[1]
                + "# The same policy as a ValidatingPolicy for Kyverno >= 1.20; not deployed with Kyverno 1.18.1.\n")


if __name__ == "__main__":
    POLICY_FILE.write_text(default_rendering(), encoding="utf-8")
    VALIDATING_POLICY_FILE.parent.mkdir(exist_ok=True)
    VALIDATING_POLICY_FILE.write_text(default_validating_policy_rendering(), encoding="utf-8")
    print(f"wrote {POLICY_FILE.relative_to(ROOT)} and {VALIDATING_POLICY_FILE.relative_to(ROOT)}")
