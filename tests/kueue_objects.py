"""Builders for Kubernetes objects used in fixtures and chain tests."""
import copy

Q = "kueue.x-k8s.io/queue-name"
NS = "team-a"
IMG = "registry.example.com/llm:1"


def ctr(gpu=None, res="nvidia.com/gpu", env=None, name="main", where="limits", claims=None):
    c = {"name": name, "image": IMG}
    if gpu is not None:
        c["resources"] = {where: {res: gpu}}
    if claims:
        c.setdefault("resources", {})["claims"] = [{"name": n} for n in claims]
    if env is not None:
        c["env"] = env
    return c


def podspec(containers=None, init=None, claims=None, gates=None):
    s = {"containers": containers if containers is not None else [ctr(1)]}
    if init:
        s["initContainers"] = init
    if claims:
        s["resourceClaims"] = [{"name": n, "resourceClaimTemplateName": "gpu-claim"} for n in claims]
    if gates:
        s["schedulingGates"] = [{"name": g} for g in gates]
    return s


def tmpl(spec, labels=None):
    t = {"spec": spec}
    if labels:
        t["metadata"] = {"labels": labels}
    return t


def meta(name, queue=None, owner=None, ns=NS, labels=None, controller=True):
    m = {"name": name, "namespace": ns}
    lab = dict(labels or {})
    if queue is not None:
        lab[Q] = queue
    if lab:
        m["labels"] = lab
    if owner:
        api, kind = owner
        m["ownerReferences"] = [{"apiVersion": api, "kind": kind, "name": f"{kind.lower()}-parent",
                                 "uid": "00000000-0000-0000-0000-0000000000aa", "controller": controller,
                                 "blockOwnerDeletion": True}]
    return m


def pod(name, spec=None, **kw):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta(name, **kw), "spec": spec or podspec()}


def job(name, spec=None, suspend=None, **kw):
    s = {"template": tmpl(spec or podspec())}
    s["template"]["spec"]["restartPolicy"] = "Never"
    if suspend is not None:
        s["suspend"] = suspend
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta(name, **kw), "spec": s}


def cronjob(name, job_queue=None, spec=None, **kw):
    jt = {"spec": {"template": tmpl(spec or podspec())}}
    jt["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    if job_queue is not None:
        jt["metadata"] = {"labels": {Q: job_queue}}
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta(name, **kw),
            "spec": {"schedule": "0 * * * *", "jobTemplate": jt}}


def apps(kind, name, spec=None, tlabels=None, **kw):
    labels = dict(tlabels or {"app": name})
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta(name, **kw),
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": tmpl(spec or podspec(), labels)}}


def jobset(name, spec=None, suspend=None, **kw):
    s = {"replicatedJobs": [{"name": "workers", "replicas": 1,
                             "template": {"spec": {"template": tmpl(spec or podspec())}}}]}
    if suspend is not None:
        s["suspend"] = suspend
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": meta(name, **kw), "spec": s}


def raycluster_spec(spec=None):
    return {"headGroupSpec": {"template": tmpl(podspec([ctr()]))},
            "workerGroupSpecs": [{"groupName": "gpu", "replicas": 1, "template": tmpl(spec or podspec())}]}


def rayjob(name, spec=None, suspend=None, **kw):
    s = {"entrypoint": "python train.py", "rayClusterSpec": raycluster_spec(spec)}
    if suspend is not None:
        s["suspend"] = suspend
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": meta(name, **kw), "spec": s}


def raycluster(name, spec=None, suspend=None, **kw):
    s = raycluster_spec(spec)
    if suspend is not None:
        s["suspend"] = suspend
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": meta(name, **kw), "spec": s}


def rayservice(name, spec=None, suspend=None, **kw):
    """A RayService: its RayCluster spec (suspend there, as Kueue's ray.io/rayservice integration reads it)."""
    s = {"serveConfigV2": "applications: []", "rayClusterSpec": raycluster_spec(spec)}
    if suspend is not None:
        s["rayClusterSpec"]["suspend"] = suspend
    return {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": meta(name, **kw), "spec": s}


def lws(name, spec=None, **kw):
    return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": meta(name, **kw),
            "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": 2, "leaderTemplate": tmpl(podspec([ctr()])),
                                                             "workerTemplate": tmpl(spec or podspec())}}}


def pytorchjob(name, spec=None, suspend=None, **kw):
    s = {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": tmpl(podspec([ctr()]))},
                                 "Worker": {"replicas": 2, "template": tmpl(spec or podspec())}}}
    if suspend is not None:
        s["runPolicy"] = {"suspend": suspend}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": meta(name, **kw), "spec": s}


def mpijob(name, spec=None, suspend=None, **kw):
    s = {"mpiReplicaSpecs": {"Launcher": {"replicas": 1, "template": tmpl(podspec([ctr()]))},
                             "Worker": {"replicas": 2, "template": tmpl(spec or podspec())}}}
    if suspend is not None:
        s["runPolicy"] = {"suspend": suspend}
    return {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": meta(name, **kw), "spec": s}


def trainjob(name, gpus=None, suspend=None, env=None, **kw):
    s = {"runtimeRef": {"name": "torch-distributed"}, "trainer": {"numNodes": 2}}
    if gpus is not None:
        s["trainer"]["resourcesPerNode"] = {"limits": {"nvidia.com/gpu": gpus}}
    if env is not None:
        s["trainer"]["env"] = env
    if suspend is not None:
        s["suspend"] = suspend
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": meta(name, **kw), "spec": s}


def appwrapper(name, component=None, suspend=None, **kw):
    comp = component or job("wrapped")
    comp = copy.deepcopy(comp)
    comp["metadata"].pop("namespace", None)
    s = {"components": [{"template": comp}]}
    if suspend is not None:
        s["suspend"] = suspend
    return {"apiVersion": "workload.codeflare.dev/v1beta2", "kind": "AppWrapper", "metadata": meta(name, **kw), "spec": s}


OWN = {
    "Job": ("batch/v1", "Job"), "CronJob": ("batch/v1", "CronJob"), "ReplicaSet": ("apps/v1", "ReplicaSet"),
    "Deployment": ("apps/v1", "Deployment"), "StatefulSet": ("apps/v1", "StatefulSet"),
    "JobSet": ("jobset.x-k8s.io/v1alpha2", "JobSet"), "RayJob": ("ray.io/v1", "RayJob"),
    "RayCluster": ("ray.io/v1", "RayCluster"), "RayService": ("ray.io/v1", "RayService"), "LeaderWorkerSet": ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
    "Pod": ("v1", "Pod"), "PyTorchJob": ("kubeflow.org/v1", "PyTorchJob"), "MPIJob": ("kubeflow.org/v2beta1", "MPIJob"),
    "MPIJobV1": ("kubeflow.org/v1", "MPIJob"),
    "TrainJob": ("trainer.kubeflow.org/v1alpha1", "TrainJob"), "AppWrapper": ("workload.codeflare.dev/v1beta2", "AppWrapper"),
}


KUBEFLOW_REPLICA_SPECS = {"TFJob": "tfReplicaSpecs", "XGBoostJob": "xgbReplicaSpecs",
                          "PaddleJob": "paddleReplicaSpecs", "JAXJob": "jaxReplicaSpecs"}


def kubeflowjob(kind, name, spec=None, suspend=None, **kw):
    """A training-operator v1 job (TFJob, XGBoostJob, PaddleJob, JAXJob)."""
    s = {KUBEFLOW_REPLICA_SPECS[kind]: {"Worker": {"replicas": 2, "template": tmpl(spec or podspec())}}}
    if suspend is not None:
        s["runPolicy"] = {"suspend": suspend}
    return {"apiVersion": "kubeflow.org/v1", "kind": kind, "metadata": meta(name, **kw), "spec": s}


for _k in KUBEFLOW_REPLICA_SPECS:
    OWN[_k] = ("kubeflow.org/v1", _k)
