"""Workload chains: the admission requests a tenant and then each controller make, replayed.

For every supported Kueue integration the chain parent -> children -> pods is replayed against
the stack's rendering of require-kueue-queue-name the way the cluster would see it:

1. Kyverno's chart `config.resourceFilters` (chart 3.8.1 values + the project's values): a
   filtered kind (ReplicaSet) is admitted without evaluation;
2. the webhook's `matchConditions` (API server): a request they skip is admitted unevaluated;
3. the rule (match/exclude, then CEL) decides.

Assertions: with the queue label every step is admitted; without it, or with a tenant forging the
controllers' steps (children with controller ownerReferences, lifting gates, unsuspending), some
step is denied. The reference platform's own tenant workloads stay admitted.

Chart data: vendor/kyverno/3.8.1 ($KYVERNO_CHART_DIR overrides). Reference platform:
$REFERENCE_PLATFORM_DIR (default ../shared/reference-platform). Tests skip when absent.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import pytest

from components import kueue_policy, yaml_io  # noqa: E402
from components import kyverno as kyverno_component  # noqa: E402
from components.config import KUEUE_DEFAULT_FRAMEWORKS, KyvernoConfig, TrustedControllers  # noqa: E402
from tests import kyverno_cel  # noqa: E402
from tests.kueue_objects import (  # noqa: E402
    KUBEFLOW_REPLICA_SPECS,
    OWN,
    Q,
    apps,
    appwrapper,
    cronjob,
    ctr,
    job,
    jobset,
    kubeflowjob,
    lws,
    mpijob,
    pod,
    podspec,
    pytorchjob,
    raycluster,
    rayjob,
    rayservice,
    trainjob,
)
from tests.kyverno_chart import chart_dir  # noqa: E402
from tests.reference_platform import reference_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
T = TrustedControllers()
TENANT = "alice@example.com"
NS_LABELS = {"team-a": {kueue_policy.KUEUE_MANAGED_LABEL: "true"},
             "team-b": {kueue_policy.KUEUE_MANAGED_LABEL: "true"}}
GATE = kueue_policy.ADMISSION_GATE
ELASTIC = kueue_policy.ELASTIC_GATE


@pytest.fixture(scope="module")
def resource_filters() -> list[tuple[str, str, str]]:
    """Kyverno's effective resourceFilters: chart 3.8.1 defaults, minus/plus the project's values."""
    chart = chart_dir()
    config = yaml_io.load((chart / "values.yaml").read_text())["config"]
    ours = kyverno_component.helm_values(KyvernoConfig()).get("config", {})
    entries = [e for e in config["resourceFilters"] if e not in ours.get("resourceFiltersExclude", [])]
    entries += ours.get("resourceFiltersInclude", [])
    out = []
    for entry in entries:
        if "{{" in entry:
            continue  # the chart's own objects in the kyverno namespace
        kind, namespace, name = entry.strip("[]").split(",")
        out.append((kind, namespace, name))
    assert ("ReplicaSet", "*", "*") in out, "chart 3.8.1 filters ReplicaSets (finding 2): model changed?"
    return out


def filtered(filters, obj: dict, subresource: str = "") -> bool:
    kind = obj["kind"] + (f"/{subresource}" if subresource else "")
    ns = obj["metadata"].get("namespace", "")
    name = obj["metadata"].get("name", "")
    return any(fnmatch.fnmatchcase(kind, k.replace("?*", "*")) and fnmatch.fnmatchcase(ns, n)
               and fnmatch.fnmatchcase(name, m) for k, n, m in filters)


@pytest.fixture(scope="module")
def policy() -> dict:
    return kueue_policy.render_policy(KyvernoConfig())


@dataclass(frozen=True)
class Step:
    user: str
    obj: dict
    old: Optional[dict] = None
    what: str = ""
    scale_of: Optional[dict] = None
    """For a write to `<kind>/scale`: the scaled object (obj and old are the Scale bodies)."""

    @property
    def operation(self) -> str:
        return "CREATE" if self.old is None else "UPDATE"

    @property
    def subresource(self) -> str:
        return "scale" if self.scale_of else ""


def admit(policy: dict, filters, step: Step, ns_labels: Optional[dict] = None) -> tuple[bool, str]:
    """(admitted, why) for one request, as the cluster would decide it."""
    if filtered(filters, step.obj, step.subresource):
        return True, "resourceFilters: not evaluated"
    if not kyverno_cel.webhook_matches(policy, step.obj, step.operation, step.old, step.user,
                                       subresource=step.subresource):
        return True, "matchConditions: Kyverno not called"
    (rule,) = policy["spec"]["rules"]
    obj, old = step.obj, step.old
    if step.scale_of:  # Kyverno's rule sees the Scale under the request's top-level kind
        obj, old = (dict(b, apiVersion=step.scale_of["apiVersion"], kind=step.scale_of["kind"]) for b in (obj, old))
    outcome = kyverno_cel.evaluate_rule(rule, obj, step.operation, step.user, [],
                                        NS_LABELS if ns_labels is None else ns_labels, old=old,
                                        subresource=step.subresource)
    if outcome.error:
        pytest.fail(f"CEL error on {step.what}: {outcome.message}")
    return outcome.result != "fail", outcome.message


# ------------------------------------------------------------------- chains

def _unsuspend(user: str, obj: dict, path=("spec", "suspend")) -> Step:
    new = copy.deepcopy(obj)
    node = new
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = False
    return Step(user, new, obj, f"{user} unsuspends {obj['kind']}")


def _ungate(user: str, gated: dict) -> Step:
    new = copy.deepcopy(gated)
    new["spec"].pop("schedulingGates", None)
    return Step(user, new, gated, f"{user} removes the admission gate")


def _gated(obj: dict) -> dict:
    """What Kueue's pod webhook does to a Pod it manages before validation: add the admission gate."""
    obj = copy.deepcopy(obj)
    obj["spec"]["schedulingGates"] = [{"name": GATE}]
    return obj


def _create(user, obj, what=""):
    return Step(user, obj, None, what or f"{user} creates {obj['kind']}/{obj['metadata']['name']}")


def chains(q: Optional[str]) -> dict[str, list[Step]]:
    """Per integration, the requests in order; `q` is the tenant's queue label (None: unlabelled)."""
    lab = {"queue": q} if q is not None else {}
    sus = dict(suspend=True, **lab)
    rj = rayjob("train", **sus)
    out = {
        "Job": [
            _create(TENANT, j := job("train", **sus)),
            _unsuspend(T.kueue, j),
            _create(T.job, pod("train-0", owner=OWN["Job"])),
        ],
        "CronJob": [
            _create(TENANT, cronjob("nightly", job_queue=q)),
            _create(T.cron_job, cj := job("nightly-1", owner=OWN["CronJob"], **sus)),
            _unsuspend(T.kueue, cj),
            _create(T.job, pod("nightly-1-0", owner=OWN["Job"])),
        ],
        "JobSet": [
            _create(TENANT, js := jobset("train", **sus)),
            _unsuspend(T.kueue, js),
            _create(T.jobset, child := job("train-workers-0", owner=OWN["JobSet"], suspend=True)),
            _unsuspend(T.jobset, child),
            _create(T.job, pod("train-workers-0-0", owner=OWN["Job"])),
        ],
        "RayJob": [
            _create(TENANT, rj),
            _unsuspend(T.kueue, rj),
            _create(T.kuberay, raycluster("train-raycluster", owner=OWN["RayJob"])),
            _create(T.kuberay, job("train-submitter", owner=OWN["RayJob"], spec=podspec([ctr()]))),
            _create(T.kuberay, pod("train-raycluster-gpu-0", owner=OWN["RayCluster"])),
            _create(T.job, pod("train-submitter-0", owner=OWN["Job"], spec=podspec([ctr()]))),
        ],
        "RayService": [
            _create(TENANT, rs := rayservice("serve", **sus)),
            _unsuspend(T.kueue, rs, ("spec", "rayClusterSpec", "suspend")),
            _create(T.kuberay, raycluster("serve-raycluster", owner=OWN["RayService"])),
            _create(T.kuberay, pod("serve-raycluster-gpu-0", owner=OWN["RayCluster"])),
        ],
        "RayCluster": [
            _create(TENANT, rc := raycluster("notebook", **sus)),
            _unsuspend(T.kueue, rc),
            _create(T.kuberay, pod("notebook-gpu-0", owner=OWN["RayCluster"])),
        ],
        "Deployment": [
            # Kueue's deployment webhook copies the queue label into the pod template, so the
            # ReplicaSet (never evaluated: resourceFilters) and its Pods carry it.
            _create(TENANT, apps("Deployment", "serve", tlabels={"app": "serve", **({Q: q} if q else {})}, **lab)),
            _create("system:serviceaccount:kube-system:deployment-controller",
                    apps("ReplicaSet", "serve-5d8f", owner=OWN["Deployment"],
                         tlabels={"app": "serve", **({Q: q} if q else {})})),
            _create(T.replica_set, p := _gated(pod("serve-5d8f-x", owner=OWN["ReplicaSet"], **lab))),
            _ungate(T.kueue, p),
        ],
        "StatefulSet": [
            _create(TENANT, apps("StatefulSet", "db", **lab)),
            _create(T.stateful_set, p := _gated(pod("db-0", owner=OWN["StatefulSet"]))),
            _ungate(T.kueue, p),
        ],
        "LeaderWorkerSet": [
            _create(TENANT, lws("vllm", **lab)),
            _create(T.lws, apps("StatefulSet", "vllm", owner=OWN["LeaderWorkerSet"])),
            _create(T.stateful_set, leader := _gated(pod("vllm-0", owner=OWN["StatefulSet"]))),
            _ungate(T.kueue, leader),
            _create(T.lws, apps("StatefulSet", "vllm-0", owner=OWN["Pod"])),
            _create(T.stateful_set, pod("vllm-0-1", owner=OWN["StatefulSet"])),
        ],
        "Pod": [
            _create(TENANT, p := _gated(pod("adhoc", **lab))),
            _ungate(T.kueue, p),
        ],
        "PyTorchJob": [
            _create(TENANT, pj := pytorchjob("finetune", **sus)),
            _unsuspend(T.kueue, pj, ("spec", "runPolicy", "suspend")),
            _create(T.kubeflow_training, pod("finetune-worker-0", owner=OWN["PyTorchJob"])),
        ],
        "MPIJob": [
            _create(TENANT, mj := mpijob("allreduce", **sus)),
            _unsuspend(T.kueue, mj, ("spec", "runPolicy", "suspend")),
            _create(T.mpi_operator, launcher := job("allreduce-launcher", owner=OWN["MPIJob"], suspend=True)),
            _unsuspend(T.mpi_operator, launcher),
            _create(T.mpi_operator, pod("allreduce-worker-0", owner=OWN["MPIJob"])),
            _create(T.job, pod("allreduce-launcher-0", owner=OWN["Job"])),
        ],
        "TrainJob": [
            _create(TENANT, tj := trainjob("llama", gpus=1, **sus)),
            _unsuspend(T.kueue, tj),
            _create(T.trainer, js2 := jobset("llama", owner=OWN["TrainJob"], suspend=True)),
            _unsuspend(T.trainer, js2),
            _create(T.jobset, job("llama-node-0", owner=OWN["JobSet"])),
            _create(T.job, pod("llama-node-0-0", owner=OWN["Job"])),
        ],
        "AppWrapper": [
            _create(TENANT, aw := appwrapper("batch", component=pytorchjob("wrapped"), **sus)),
            _unsuspend(T.kueue, aw),
            _create(T.appwrapper, pytorchjob("wrapped", owner=OWN["AppWrapper"])),
            _create(T.kubeflow_training, pod("wrapped-worker-0", owner=OWN["PyTorchJob"])),
        ],
    }
    for kind in KUBEFLOW_REPLICA_SPECS:
        parent = kubeflowjob(kind, kind.lower(), **sus)
        out[kind] = [
            _create(TENANT, parent),
            _unsuspend(T.kueue, parent, ("spec", "runPolicy", "suspend")),
            _create(T.kubeflow_training, pod(f"{kind.lower()}-worker-0", owner=OWN[kind])),
        ]
    return out


INTEGRATIONS = sorted(chains("q"))


def test_every_workload_kind_has_a_chain():
    covered = {k for k in INTEGRATIONS}
    expected = {w.key.split("/")[1] for w in kueue_policy.WORKLOADS}
    assert expected <= covered, f"no chain for {sorted(expected - covered)}"


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_labelled_chain_is_admitted(integration, policy, resource_filters):
    for step in chains("team-a-gpu")[integration]:
        ok, why = admit(policy, resource_filters, step)
        assert ok, f"{integration}: {step.what} denied: {why}"


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_unlabelled_chain_is_stopped(integration, policy, resource_filters):
    steps = chains(None)[integration]
    results = [(s, *admit(policy, resource_filters, s)) for s in steps]
    assert any(not ok for _, ok, _ in results), (
        f"{integration}: no step denied without the queue label: "
        + "; ".join(f"{s.what}: {why}" for s, _, why in results))


@pytest.mark.parametrize("integration", INTEGRATIONS)
def test_tenant_forging_the_controller_steps_is_stopped(integration, policy, resource_filters):
    """The tenant makes the controllers' and Kueue's requests itself (forged ownerReferences,
    lifting the gate, unsuspending): each of those that carries accelerators is denied."""
    steps = chains("team-a-gpu")[integration]
    forged = [replace(s, user=TENANT) for s in steps if s.user != TENANT]
    denied = []
    for s in forged:
        ok, why = admit(policy, resource_filters, s)
        if not ok:
            denied.append(s.what)
    assert denied, f"{integration}: a tenant could replay every controller step"
    # and every forged step that would run accelerators outside quota is among them
    for s in forged:
        accel = kyverno_cel.webhook_matches(policy, s.obj, s.operation, s.old, TENANT)
        if accel and not filtered(resource_filters, s.obj):
            assert not admit(policy, resource_filters, s)[0], f"{integration}: forged step admitted: {s.what}"


def test_bare_replicaset_cannot_run_unlabelled_gpu_pods(policy, resource_filters):
    """Finding 2: the ReplicaSet itself is never evaluated, its unlabelled GPU Pods are denied."""
    rs = apps("ReplicaSet", "bare", owner=None)
    assert admit(policy, resource_filters, _create(TENANT, rs))[0], "ReplicaSets are filtered by the chart"
    ok, why = admit(policy, resource_filters, _create(T.replica_set, pod("bare-x", owner=OWN["ReplicaSet"])))
    assert not ok and Q in why, "Pods of a bare unlabelled ReplicaSet must be denied"


# ------------------------------------------------------ reference platform

def _reference() -> Path:
    return reference_dir("workloads")


def _docs(folder: Path) -> list[dict]:
    out = []
    for f in sorted(folder.rglob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        out += [d for d in yaml_io.load_all(f.read_text()) if isinstance(d, dict) and d.get("kind")]
    return out


def test_reference_tenant_workloads_stay_admitted(policy, resource_filters):
    ref = _reference()
    namespaces = {d["metadata"]["name"]: d["metadata"].get("labels", {})
                  for d in _docs(ref / "workloads" / "kueue-tenants") if d["kind"] == "Namespace"}
    assert namespaces == {"team-a": NS_LABELS["team-a"], "team-b": NS_LABELS["team-b"]}, namespaces
    docs = _docs(ref / "workloads") + _docs(ref / "platform" / "kueue-config")
    jobs = [d for d in docs if d["kind"] == "Job" and d["metadata"].get("namespace") in namespaces]
    assert len(jobs) == 2, "the kueue-demo Jobs of team-a and team-b"
    for doc in docs:
        step = _create(TENANT, doc)
        ok, why = admit(policy, resource_filters, step)
        assert ok, f"reference {doc['kind']}/{doc['metadata']['name']} denied: {why}"
    for j in jobs:  # Kueue admits the demo Job, then the Job controller creates its Pod
        ok, why = admit(policy, resource_filters, _unsuspend(T.kueue, j))
        assert ok, why
        tmpl = copy.deepcopy(j["spec"]["template"])
        p = {"apiVersion": "v1", "kind": "Pod",
             "metadata": {**tmpl.get("metadata", {}), "name": f"{j['metadata']['name']}-0",
                          "namespace": j["metadata"]["namespace"],
                          "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": j["metadata"]["name"],
                                               "uid": "u", "controller": True}]},
             "spec": tmpl["spec"]}
        ok, why = admit(policy, resource_filters, _create(T.job, p))
        assert ok, f"pod of reference Job {j['metadata']['name']} denied: {why}"
        unlabelled = copy.deepcopy(j)
        del unlabelled["metadata"]["labels"][Q]
        assert not admit(policy, resource_filters, _create(TENANT, unlabelled))[0], (
            f"reference Job {j['metadata']['name']} without {Q} must be denied")


def test_reference_kueue_setup_matches_the_policy():
    """The reference Kueue install scopes its Job/Pod webhooks to the same namespace label, and its
    ClusterQueue covers the accelerator the policy defaults to."""
    ref = _reference()
    kustomization = (ref / "platform" / "kueue" / "kustomization.yaml").read_text()
    assert kueue_policy.KUEUE_MANAGED_LABEL in kustomization
    (cq,) = [d for d in _docs(ref / "platform" / "kueue-config") if d["kind"] == "ClusterQueue"]
    covered = {r for g in cq["spec"]["resourceGroups"] for r in g["coveredResources"]}
    assert "nvidia.com/gpu" in covered and "nvidia.com/gpu" in KyvernoConfig().accelerator_resources


def test_no_matched_kind_is_hidden_by_resource_filters(resource_filters):
    """A kind the chart filters would be admitted unevaluated: none of the policy's kinds may be."""
    for w in kueue_policy.WORKLOADS:
        group, kind = w.key.split("/")
        obj = {"apiVersion": f"{group}/v1" if group else "v1", "kind": kind,
               "metadata": {"name": "x", "namespace": "team-a"}}
        assert not filtered(resource_filters, obj), f"{kind} is in the chart's resourceFilters"
    assert not filtered(resource_filters, {"kind": "Pod", "metadata": {"name": "x", "namespace": "team-a"}},
                        "ephemeralcontainers")


class _VerifyCluster:
    """The API calls tools/verify.py's SR2 checks make, answered by this file's model of the cluster:
    namespaces and their labels, Kueue's pod webhook (gates a labelled Pod without a Kueue parent), then
    Kyverno (resourceFilters, matchConditions, the rule with the namespace's labels)."""

    def __init__(self, policy, filters):
        self.policy, self.filters, self.labels, self.calls = policy, filters, {}, []

    def create_namespace(self, body):
        self.calls.append(("create_namespace", body["metadata"]["name"]))
        self.labels[body["metadata"]["name"]] = dict(body["metadata"].get("labels") or {})

    def patch_namespace(self, name, body):
        self.calls.append(("label_namespace", name, dict(body["metadata"]["labels"])))
        self.labels[name].update(body["metadata"]["labels"])

    def delete_namespace(self, name):
        self.calls.append(("delete_namespace", name))

    def create_namespaced_pod(self, namespace, body, dry_run=None):
        from kubernetes.client.rest import ApiException

        assert dry_run == "All", "verify creates nothing"
        pod = copy.deepcopy(body)
        pod["metadata"]["namespace"] = namespace
        managed = self.labels[namespace].get(kueue_policy.KUEUE_MANAGED_LABEL) == "true"
        if managed and Q in pod["metadata"].get("labels", {}):
            pod = _gated(pod)  # Kueue's mutating pod webhook (scoped by the same label) runs first
        self.calls.append(("create_pod", pod["metadata"]["name"]))
        ok, why = admit(self.policy, self.filters, _create(TENANT, pod), self.labels)
        if not ok:
            raise ApiException(status=400, reason=why)


def test_verify_runs_the_label_steps_on_a_hand_labelled_namespace(policy, resource_filters):
    """Finding 5: `make verify` labels a namespace by hand (kubectl label ns ... llm-platform/kueue-managed=true)
    and checks that SR2 covers it: GPU pod without the label denied, with the label admitted, CPU pod admitted."""
    from tools import verify

    cluster = _VerifyCluster(policy, resource_filters)
    rows = verify.sr2(cluster, sleep=lambda _: None)
    assert [r.status for r in rows] == ["PASS", "PASS", "PASS"], [(r.check, r.status, r.detail) for r in rows]
    created = cluster.calls[0]
    assert created[0] == "create_namespace" and cluster.calls[1][0] == "label_namespace", cluster.calls
    assert cluster.calls[1][2] == {kueue_policy.KUEUE_MANAGED_LABEL: "true"}
    assert not created[1].startswith("llm-platform-verify-"), "no name the policy would special-case"
    assert cluster.calls[-1] == ("delete_namespace", created[1])


def test_reference_serving_workloads_are_out_of_scope(policy, resource_filters):
    """The platform's own GPU model servers (serving, kserve, llm-d) never depend on SR2."""
    ref = _reference()
    docs = [d for d in _docs(ref / "serving") if isinstance(d.get("metadata"), dict)]
    gpu = [d for d in docs if "nvidia.com/gpu" in yaml_io.dump(d)]
    assert gpu, "expected GPU model servers in the reference serving manifests"
    for doc in docs:
        ok, why = admit(policy, resource_filters, _create(TENANT, doc))
        assert ok, f"reference {doc['kind']}/{doc['metadata'].get('name')} denied: {why}"
    for doc in gpu:
        assert not kyverno_cel.webhook_matches(policy, doc, "CREATE"), (
            f"reference {doc['kind']}/{doc['metadata'].get('name')} would wait for Kyverno")


# ------------------------------------------- issue 21: bypasses through controllers

@pytest.mark.parametrize("anchor", [
    job("anchor", queue="team-a-gpu", suspend=True, spec=podspec([ctr()])),
    apps("Deployment", "anchor", queue="team-a-gpu", spec=podspec([ctr()])),
    raycluster("anchor", queue="team-a-gpu", suspend=True, spec=podspec([ctr()])),
], ids=lambda a: a["kind"])
def test_forged_replicaset_owner_is_stopped(anchor, policy, resource_filters):
    """Finding 1: a CPU-only labelled object as anchor; a ReplicaSet whose controller owner is that anchor,
    the queue label in its template and 8 GPUs. Kyverno never sees the ReplicaSet (resourceFilters);
    Kueue's pod webhook walks Pod -> ReplicaSet -> anchor and does not gate the Pod; the Pod is denied."""
    assert admit(policy, resource_filters, _create(TENANT, anchor))[0], "a CPU-only anchor is admitted"
    rs = apps("ReplicaSet", "gpu-rs", owner=(anchor["apiVersion"], anchor["kind"]),
              tlabels={"app": "gpu-rs", Q: "team-a-gpu"}, spec=podspec([ctr(8)]))
    assert admit(policy, resource_filters, _create(TENANT, rs))[0], "ReplicaSets are never evaluated"
    ungated = pod("gpu-rs-x", owner=OWN["ReplicaSet"], queue="team-a-gpu", spec=podspec([ctr(8)]))
    ok, why = admit(policy, resource_filters, _create(T.replica_set, ungated))
    assert not ok and GATE in why, why
    # Without the forged owner Kueue gates the Pod (its own workload), and the Pod is admitted.
    assert admit(policy, resource_filters, _create(T.replica_set, _gated(ungated)))[0]


def _elastic(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    obj["metadata"].setdefault("annotations", {})[kueue_policy.ELASTIC_ANNOTATION] = "true"
    return obj


def test_elastic_job_gates_are_kueues(policy, resource_filters):
    """Finding 2: an elastic Job (Kueue's job webhook puts kueue.x-k8s.io/elastic-job into its template);
    its scale-up Pods carry that gate, and only Kueue removes it, from the Pod or the template."""
    ej = _elastic(job("elastic", queue="team-a-gpu", suspend=True, spec=podspec(gates=[ELASTIC])))
    p = pod("elastic-0", owner=OWN["Job"], spec=podspec(gates=[ELASTIC]))
    ok_steps = [_create(TENANT, ej), _unsuspend(T.kueue, ej), _create(T.job, p), _ungate(T.kueue, p)]
    for step in ok_steps:
        ok, why = admit(policy, resource_filters, step)
        assert ok, f"{step.what}: {why}"
    for step in (_ungate(TENANT, p), _ungate(T.job, p)):
        ok, why = admit(policy, resource_filters, step)
        assert not ok and "elastic-job" in why, f"{step.what} admitted"
    no_gate = copy.deepcopy(ej)
    no_gate["spec"]["template"]["spec"].pop("schedulingGates")
    assert not admit(policy, resource_filters, Step(TENANT, no_gate, ej, "tenant drops the template gate"))[0]
    tas = _gated(pod("tas", queue="team-a-gpu"))
    tas["spec"]["schedulingGates"].append({"name": "kueue.x-k8s.io/topology"})
    only_admission = copy.deepcopy(tas)
    only_admission["spec"]["schedulingGates"] = [{"name": GATE}]
    assert not admit(policy, resource_filters, Step(TENANT, only_admission, tas, "tenant drops topology gate"))[0]
    assert admit(policy, resource_filters, Step(T.kueue, only_admission, tas, "Kueue drops topology gate"))[0]


def test_reparenting_a_running_pod_is_stopped(policy, resource_filters):
    """Finding 3: the tenant points a running GPU Pod of an admitted Job at another Job of the same kind."""
    running = pod("train-0", owner=OWN["Job"])
    moved = copy.deepcopy(running)
    moved["metadata"]["ownerReferences"][0].update(name="cpu-decoy", uid="00000000-0000-0000-0000-0000000000bb")
    ok, why = admit(policy, resource_filters, Step(TENANT, moved, running, "tenant re-parents"))
    assert not ok and "uid" in why, why
    orphan = pod("orphan-0", queue="team-a-gpu")
    adopted = copy.deepcopy(orphan)
    adopted["metadata"]["ownerReferences"] = copy.deepcopy(running["metadata"]["ownerReferences"])
    assert admit(policy, resource_filters, Step(T.job, adopted, orphan, "job-controller adopts an orphan"))[0]


def _scaled(obj: dict, path: tuple, value) -> dict:
    new = copy.deepcopy(obj)
    node = new
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return new


@pytest.mark.parametrize("child,path,controller", [
    (job("train-workers-0", owner=OWN["JobSet"]), ("spec", "parallelism"), T.jobset),
    (raycluster("train-raycluster", owner=OWN["RayJob"]), ("spec", "workerGroupSpecs", 0, "replicas"), T.kuberay),
    (raycluster("serve-raycluster", owner=OWN["RayService"]), ("spec", "workerGroupSpecs", 0, "replicas"), T.kuberay),
    (apps("StatefulSet", "vllm", owner=OWN["LeaderWorkerSet"]), ("spec", "replicas"), T.lws),
], ids=lambda v: v["metadata"]["name"] if isinstance(v, dict) else None)
def test_resizing_an_admitted_child_is_stopped(child, path, controller, policy, resource_filters):
    """Finding 6: more replicas of a child Kueue admitted through its parent would run outside the parent's
    quota; only the parent's controller (or Kueue) changes the child, unless Kueue marks it elastic."""
    bigger = _scaled(child, path, 8)
    ok, why = admit(policy, resource_filters, Step(TENANT, bigger, child, "tenant scales the child"))
    assert not ok and "parent" in why, why
    assert admit(policy, resource_filters, Step(controller, bigger, child, "its controller scales it"))[0]
    assert admit(policy, resource_filters, Step(T.kueue, bigger, child, "Kueue changes it"))[0]


def _scale_step(user: str, target: dict, replicas: int) -> Step:
    """`kubectl scale` (or an HPA) on `target`: an UPDATE of <kind>/scale whose Scale body carries the
    target's name and namespace, never its owner or labels."""
    def body(n):
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": target["metadata"]["name"], "namespace": target["metadata"]["namespace"]},
                "spec": {"replicas": n} if n else {}, "status": {"replicas": 1}}
    return Step(user, body(replicas), body(1), f"{user} scales {target['kind']}/{target['metadata']['name']}",
                scale_of=target)


HPA = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"


@pytest.mark.parametrize("child,controller", [
    (apps("StatefulSet", "vllm-0", owner=OWN["Pod"]), T.lws),
    (apps("StatefulSet", "vllm", owner=OWN["LeaderWorkerSet"]), T.lws),
    (lws("vllm", owner=OWN["AppWrapper"]), T.appwrapper),
    (pytorchjob("wrapped", owner=OWN["AppWrapper"]), T.appwrapper),
], ids=lambda v: f"{v['kind']}-{v['metadata']['name']}" if isinstance(v, dict) else None)
def test_scaling_an_admitted_child_through_its_scale_subresource_is_stopped(child, controller, policy,
                                                                           resource_filters):
    """The scale subresource: the same resize as above, through a Scale that names no owner. Only trusted
    controllers and Kueue write it; the tenant's way is an UPDATE of spec.replicas, which the rule judges
    on the whole object (denied for the child, admitted for the tenant's own top-level object)."""
    for user in (TENANT, HPA):
        for replicas in (8, 0):
            ok, why = admit(policy, resource_filters, _scale_step(user, child, replicas))
            assert not ok and "scale subresource" in why, (user, replicas, why)
    assert admit(policy, resource_filters, _scale_step(controller, child, 8))[0]
    assert admit(policy, resource_filters, _scale_step(T.kueue, child, 8))[0]
    own = apps("StatefulSet", "own", queue="team-a-gpu", tlabels={"app": "own", Q: "team-a-gpu"})
    assert admit(policy, resource_filters, Step(TENANT, _scaled(own, ("spec", "replicas"), 3), own,
                                                "tenant patches its own StatefulSet's replicas"))[0]


def test_scale_requests_elsewhere_are_not_judged(policy, resource_filters):
    """Blast radius of the scale rule: Deployment/scale (HPA on CPU services) is not in the rule's kinds, from
    which Kyverno registers its webhook rules, so the API server never sends it; StatefulSet/scale in a
    namespace without the label reaches Kyverno and is skipped there."""
    web = apps("Deployment", "web", ns="team-plain")
    ok, why = admit(policy, resource_filters, _scale_step(HPA, web, 5))
    assert ok, why
    assert not any(k.startswith("Deployment/") for k in
                   policy["spec"]["rules"][0]["match"]["any"][0]["resources"]["kinds"])
    db = apps("StatefulSet", "db", ns="team-plain", spec=podspec([ctr()]))
    ok, why = admit(policy, resource_filters, _scale_step(TENANT, db, 3))
    assert ok and "does not match" in why, why


def test_owner_versions_are_kueues(policy, resource_filters):
    """Kueue knows an owner only at its integration's exact apiVersion (`ownerReferenceMatchingGVK`): Pods of
    a training-operator kubeflow.org/v1 MPIJob are not children of Kueue's MPIJob (kubeflow.org/v2beta1).
    Kueue manages them as plain Pods, so they need the queue label and Kueue's gate."""
    ok, why = admit(policy, resource_filters, _create(T.kubeflow_training, pod("mpi-v1-worker-0", owner=OWN["MPIJobV1"])))
    assert not ok and "queue-name" in why, why
    labelled = _gated(pod("mpi-v1-worker-0", owner=OWN["MPIJobV1"], queue="team-a-gpu"))
    assert admit(policy, resource_filters, _create(T.kubeflow_training, labelled))[0]
    assert admit(policy, resource_filters, _create(T.mpi_operator, pod("mpi-worker-0", owner=OWN["MPIJob"])))[0]


def test_elastic_child_may_be_resized(policy, resource_filters):
    """Finding 6, exception: a child marked elastic (Kueue's annotation, every pod template gated with
    kueue.x-k8s.io/elastic-job) scales through workload slices: its new Pods wait for Kueue."""
    rc = _elastic(raycluster("elastic-raycluster", owner=OWN["RayJob"], spec=podspec(gates=[ELASTIC])))
    rc["spec"]["headGroupSpec"]["template"]["spec"]["schedulingGates"] = [{"name": ELASTIC}]
    bigger = _scaled(rc, ("spec", "workerGroupSpecs", 0, "replicas"), 4)
    assert admit(policy, resource_filters, Step(TENANT, bigger, rc, "autoscaler scales the elastic child"))[0]
    plain = raycluster("train-raycluster", owner=OWN["RayJob"])
    sneaky = _elastic(_scaled(plain, ("spec", "workerGroupSpecs", 0, "replicas"), 4))
    assert not admit(policy, resource_filters, Step(TENANT, sneaky, plain, "tenant marks it elastic and scales"))[0]


def test_disabled_kueue_frameworks_are_not_trusted(resource_filters):
    """Finding 4, with Kueue 0.19.2's chart defaults (training-operator v1 kinds off): the tenant's own
    PyTorchJob is denied; a PyTorchJob inside an AppWrapper, and its Pods, stay admitted."""
    frameworks = [f for f in KUEUE_DEFAULT_FRAMEWORKS if not f.startswith("kubeflow.org/") or f == "kubeflow.org/mpijob"]
    policy = kueue_policy.render_policy(KyvernoConfig.model_validate({"kueue": {"frameworks": frameworks}}))
    own = pytorchjob("finetune", queue="team-a-gpu", suspend=True)
    ok, why = admit(policy, resource_filters, _create(TENANT, own))
    assert not ok and "kyverno.kueue.frameworks" in why, why
    wrapped = pytorchjob("wrapped")
    steps = [
        _create(TENANT, aw := appwrapper("batch", component=wrapped, queue="team-a-gpu", suspend=True)),
        _unsuspend(T.kueue, aw),
        _create(T.appwrapper, pytorchjob("wrapped", owner=OWN["AppWrapper"])),
        _create(T.kubeflow_training, pod("wrapped-worker-0", owner=OWN["PyTorchJob"])),
    ]
    for step in steps:
        ok, why = admit(policy, resource_filters, step)
        assert ok, f"{step.what}: {why}"
