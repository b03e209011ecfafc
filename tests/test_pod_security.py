"""Pod Security Admission on tenant namespaces: labels in both renders, node escapes refused,
the platform's own tenant workloads admitted, and the offline checker matching upstream PSA v1.33."""

import copy
import subprocess
import sys

import kubernetes_validate
import pytest

from components import config, yaml_io
from components.tenants import pod_security_labels, tenant_metadata
from tests import reference_platform
from tools import mockrun, pod_security
from tools.pod_security import admit, check_object, check_pod_spec

ROOT = mockrun.ROOT
PSA = "pod-security.kubernetes.io/"
VERSION = config.POD_SECURITY_VERSION


# ------------------------------------------------------------------ objects


def pod(name="p", namespace="team-a", spec_extra=None, container_extra=None, pod_sc=None):
    return pod_security.restricted_pod(name, namespace, spec_extra, container_extra, pod_sc)


def valid(obj):
    """Cases are real Kubernetes 1.33 objects: a refusal is PSA's, not a malformed object's."""
    try:
        kubernetes_validate.validate(obj, "1.33.0", strict=True)
    except kubernetes_validate.ValidationError as err:
        pytest.fail(f"test object {obj['kind']}/{obj['metadata']['name']} is not valid Kubernetes 1.33: {err.message}")
    return obj


ESCAPES = pod_security.node_escape_pods("team-a")


# ------------------------------------------------------------------ renders


@pytest.fixture(scope="module")
def renders(rendered):
    return {stack: rendered(stack)[0] for stack in ("dev", "prod")}


def stack_settings(stack):
    return config.parse(mockrun.stack_config(stack), stack)


def rendered_tenant_namespaces(out, tenants):
    found = {}
    for path in sorted((out / "k8s").glob("Namespace._cluster.*.yaml")):
        obj = yaml_io.load(path.read_text())
        if obj["metadata"]["name"] in tenants:
            found[obj["metadata"]["name"]] = obj
    return found


@pytest.mark.parametrize("stack,level", [("dev", "baseline"), ("prod", "restricted")])
def test_render_labels_every_tenant_namespace(renders, stack, level):
    settings = stack_settings(stack)
    assert settings.tenants, f"{stack}: the stack has tenants to label"
    namespaces = rendered_tenant_namespaces(renders[stack], settings.tenants)
    assert sorted(namespaces) == sorted(settings.tenants), f"{stack}: every tenant namespace is rendered"
    want = {
        f"{PSA}enforce": level, f"{PSA}enforce-version": VERSION,
        f"{PSA}warn": "restricted", f"{PSA}warn-version": VERSION,
        f"{PSA}audit": "restricted", f"{PSA}audit-version": VERSION,
    }
    for name, ns in namespaces.items():
        labels = ns["metadata"]["labels"]
        got = {k: v for k, v in labels.items() if k.startswith(PSA)}
        assert got == want, f"{stack}: Namespace {name} Pod Security labels: {got}"
        assert labels["llm-platform/kueue-managed"] == "true", f"{stack}: Namespace {name} keeps the Kueue label"


def test_security_off_labels_nothing():
    records = mockrun.run("dev", {**mockrun.stack_config("dev"), "llm-platform:security": "false"})
    labelled = [
        r.name for r in records
        if r.type in ("kubernetes:core/v1:Namespace", "kubernetes:core/v1:NamespacePatch")
        and any(k.startswith(PSA) for k in (r.inputs.get("metadata", {}).get("labels") or {}))
    ]
    assert labelled == [], f"security: false registers no Pod Security labels, got {labelled}"


def test_prod_enforces_restricted_and_dev_the_default():
    assert stack_settings("prod").pod_security.enforce == "restricted", "Pulumi.prod.yaml: podSecurity.enforce"
    assert stack_settings("dev").pod_security.enforce == "baseline", "dev keeps the default level"
    assert config.PodSecurityConfig().enforce == "baseline", "default level is baseline"


def test_pinned_version_is_one_the_checker_implements():
    assert pod_security.parse_version(VERSION) == (1, 33), "pinned to the Kubernetes minor the project validates against"


@pytest.mark.parametrize("bad", ["privileged", "Restricted", "strict"])
def test_enforce_level_below_baseline_or_unknown_is_a_config_error(bad):
    raw = {**mockrun.stack_config("dev"), "llm-platform:podSecurity": f'{{"enforce": "{bad}"}}'}
    with pytest.raises(config.ConfigError) as err:
        config.parse(raw, "dev")
    msg = str(err.value)
    assert "`llm-platform:podSecurity.enforce`" in msg and "baseline" in msg and "restricted" in msg, msg


def test_unknown_pod_security_key_is_a_config_error():
    raw = {**mockrun.stack_config("dev"), "llm-platform:podSecurity": '{"enforceVersion": "v1.20"}'}
    with pytest.raises(config.ConfigError, match=r"podSecurity\.enforceVersion.*unknown key"):
        config.parse(raw, "dev")


# ------------------------------------------------------------------ escapes refused in a tenant namespace


def tenant_labels(level):
    return tenant_metadata("team-a", config.PodSecurityConfig(enforce=level))["labels"]


@pytest.mark.parametrize("level", ["baseline", "restricted"])
@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_node_escape_is_refused_in_a_tenant_namespace(case, level):
    obj, check = ESCAPES[case]
    if level == "restricted" and check == "hostPathVolumes":
        check = "restrictedVolumes"  # restricted replaces hostPathVolumes (OverrideCheckIDs)
    decision = admit(tenant_labels(level), valid(obj))
    assert not decision.allowed, f"Pod {case} must be refused by PSA enforce={level} in a tenant namespace"
    assert check in {v.check for v in decision.enforce}, f"Pod {case}: refused by check {check}, got {decision.enforce}"


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_escape_is_admitted_without_the_labels(case):
    # The hole the issue describes: a namespace without Pod Security labels admits every escape.
    obj, _ = ESCAPES[case]
    assert admit({}, obj).allowed, f"Pod {case}: an unlabelled namespace is `privileged` and admits it"


def test_the_escape_cases_differ_from_an_admitted_pod_only_in_the_escape():
    base = valid(pod("plain"))
    decision = admit(tenant_labels("restricted"), base)
    assert decision.allowed and not decision.warn, f"the base pod passes restricted: {decision.warn}"


@pytest.mark.parametrize("where", ["initContainers", "ephemeralContainers"])
def test_privileged_init_and_ephemeral_containers_are_refused(where):
    obj = pod("sneaky")
    extra = {"name": "helper", "image": "busybox", "securityContext": {"privileged": True}}
    obj["spec"][where] = [extra]
    valid(obj)
    decision = admit(tenant_labels("baseline"), obj)
    assert not decision.allowed, f"a privileged container in {where} is refused (visitContainers visits it)"


def test_host_ipc_and_host_port_are_refused_at_baseline():
    for obj, check in [
        (pod("ipc", spec_extra={"hostIPC": True}), "hostNamespaces"),
        (pod("port", container_extra={"ports": [{"containerPort": 8000, "hostPort": 8000}]}), "hostPorts"),
    ]:
        violations = {v.check for v in check_object(valid(obj), "baseline", VERSION)}
        assert check in violations, f"Pod {obj['metadata']['name']}: baseline check {check}"


# ------------------------------------------------------------------ controllers


def deployment_of(p):
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "team-a"},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": p["spec"]},
        },
    }


def test_controllers_get_warnings_and_their_pods_are_refused():
    bad = ESCAPES["host-network"][0]
    dep = valid(deployment_of(bad))
    decision = admit(tenant_labels("baseline"), dep)
    assert decision.allowed, "enforce never rejects the Deployment itself (PSA enforces on Pods)"
    assert {v.check for v in decision.warn} >= {"hostNamespaces"}, "warn=restricted reports the template"
    assert {v.check for v in decision.audit} >= {"hostNamespaces"}, "audit=restricted records the template"
    assert not admit(tenant_labels("baseline"), bad).allowed, "the Pod the ReplicaSet creates is refused"


def test_cronjob_template_is_read_where_psa_reads_it():
    bad = ESCAPES["privileged"][0]
    cron = {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "namespace": "team-a"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {**bad["spec"], "restartPolicy": "Never"}}}}},
    }
    assert {v.check for v in check_object(valid(cron), "baseline", VERSION)} == {"privileged"}


def test_kinds_without_a_pod_spec_are_not_evaluated():
    assert check_object({"kind": "ConfigMap", "metadata": {"name": "x"}}, "restricted", VERSION) == []


# ------------------------------------------------------------------ reference tenant workloads


def reference_dir():
    return reference_platform.reference_dir("workloads")


def reference_workloads():
    out = []
    for path in sorted((reference_dir() / "workloads").rglob("*.yaml")):
        for obj in yaml_io.load_all(path.read_text()):
            if isinstance(obj, dict) and pod_security.pod_of(obj) is not None:
                out.append((path, obj))
    return out


def test_reference_tenant_jobs_exist():
    names = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for _, o in reference_workloads()}
    assert {("Job", "team-a", "gpu-job-a"), ("Job", "team-b", "gpu-job-b")} <= names, names


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_reference_tenant_workloads_are_admitted(stack):
    labels = tenant_metadata("team-a", stack_settings(stack).pod_security)["labels"]
    for path, obj in reference_workloads():
        what = f"{path.name}: {obj['kind']} {obj['metadata']['name']}"
        decision = admit(labels, obj)
        assert decision.allowed and decision.enforce == [], f"{stack}: {what} violates enforce: {decision.enforce}"
        assert decision.warn == [], f"{stack}: {what} draws restricted warnings: {decision.warn}"
        # What enforce then sees: the Job's Pods (template metadata + spec, as the Job controller creates them).
        meta, spec = pod_security.pod_of(obj)
        as_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", **meta}, "spec": spec}
        assert admit(labels, as_pod).allowed, f"{stack}: the Pods of {what} are refused"


def test_reference_job_with_one_weakening_fails_restricted():
    # The acceptance above is not vacuous: the same Job loses restricted with one field removed.
    _, job = next((p, o) for p, o in reference_workloads() if o["metadata"]["name"] == "gpu-job-a")
    weakened = copy.deepcopy(job)
    del weakened["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"]
    assert {v.check for v in check_object(weakened, "restricted", VERSION)} == {"allowPrivilegeEscalation"}
    assert check_object(weakened, "baseline", VERSION) == [], "baseline does not require it"


def test_cli_passes_the_reference_jobs_and_fails_an_escape(tmp_path):
    jobs = sorted((reference_dir() / "workloads" / "kueue-demo").glob("job-*.yaml"))
    ok = subprocess.run([sys.executable, "-m", "tools.pod_security", "--level", "restricted", *map(str, jobs)],
                        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.count("PASS") == len(jobs), ok.stdout + ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_io.dump_all([ESCAPES["host-pid"][0], pod("fine")]))
    res = subprocess.run([sys.executable, "-m", "tools.pod_security", "--level", "baseline", str(bad)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "FAIL" in res.stdout and "hostPID" in res.stdout, res.stdout


# ------------------------------------------------------------------ checker semantics (upstream v1.33)


def checks(obj, level, version=VERSION):
    return {v.check for v in check_object(obj, level, version)}


def test_run_as_non_root_pod_level_covers_containers_but_not_an_explicit_false():
    assert checks(pod(), "restricted") == set()
    explicit = pod(container_extra={"securityContext": {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": False}})
    assert checks(explicit, "restricted") == {"runAsNonRoot"}, "container runAsNonRoot=false under pod true"
    unset = pod(pod_sc={"seccompProfile": {"type": "RuntimeDefault"}})
    assert checks(unset, "restricted") == {"runAsNonRoot"}, "neither pod nor container sets it"
    per_container = pod(pod_sc={"seccompProfile": {"type": "RuntimeDefault"}}, container_extra={"securityContext": {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}})
    assert checks(per_container, "restricted") == set(), "every container sets it"


def test_run_as_user_zero_is_restricted_only():
    root = pod(pod_sc={"runAsNonRoot": True, "runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}})
    assert checks(root, "restricted") == {"runAsUser"}
    assert checks(root, "baseline") == set()


def test_seccomp_unconfined_is_baseline_and_missing_is_restricted():
    unconfined = pod(container_extra={"securityContext": {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "Unconfined"}}})
    assert checks(unconfined, "baseline") == {"seccompProfile_baseline"}
    assert checks(unconfined, "restricted") == {"seccompProfile_restricted"}, "restricted overrides the baseline check"
    missing = pod(pod_sc={"runAsNonRoot": True})
    assert checks(missing, "restricted") == {"seccompProfile_restricted"}
    assert checks(missing, "baseline") == set()


def test_capabilities_baseline_set_and_restricted_drop_all():
    def with_caps(caps):
        return pod(container_extra={"securityContext": {"allowPrivilegeEscalation": False, "capabilities": caps}})
    assert checks(with_caps({"drop": ["ALL"], "add": ["CHOWN"]}), "baseline") == set(), "CHOWN is in the default set"
    assert checks(with_caps({"add": ["NET_RAW"]}), "baseline") == {"capabilities_baseline"}
    assert checks(with_caps({"add": ["SYS_ADMIN"]}), "baseline") == {"capabilities_baseline"}
    assert checks(with_caps({"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}), "restricted") == set()
    assert checks(with_caps({"drop": ["ALL"], "add": ["CHOWN"]}), "restricted") == {"capabilities_restricted"}
    assert checks(with_caps({"drop": ["NET_RAW"]}), "restricted") == {"capabilities_restricted"}


def test_privilege_escalation_unset_means_allowed_so_restricted_refuses_it():
    obj = pod(container_extra={"securityContext": {"capabilities": {"drop": ["ALL"]}}})
    assert checks(obj, "restricted") == {"allowPrivilegeEscalation"}
    assert checks(obj, "baseline") == set()


def test_volume_types():
    def with_volume(vol):
        return pod(spec_extra={"volumes": [{"name": "v", **vol}]})
    assert checks(with_volume({"nfs": {"server": "nfs.example", "path": "/"}}), "restricted") == {"restrictedVolumes"}
    assert checks(with_volume({"nfs": {"server": "nfs.example", "path": "/"}}), "baseline") == set()
    for ok in ({"emptyDir": {}}, {"persistentVolumeClaim": {"claimName": "c"}}, {"image": {"reference": "r"}},
               {"projected": {"sources": []}}, {"csi": {"driver": "d"}}):
        assert checks(with_volume(ok), "restricted") == set(), f"restricted allows {ok}"
    host = with_volume({"hostPath": {"path": "/var/lib/nvidia"}})
    assert checks(host, "restricted") == {"restrictedVolumes"}, "restricted reports hostPath via restrictedVolumes"
    assert checks(host, "baseline") == {"hostPathVolumes"}


def test_sysctls_follow_the_version():
    obj = pod(pod_sc={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"},
                      "sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "4096 87380 16777216"}]})
    assert checks(obj, "baseline", "v1.33") == set(), "tcp_rmem is safe from v1.32"
    assert checks(obj, "baseline", "v1.31") == {"sysctls"}
    unsafe = pod(pod_sc={"sysctls": [{"name": "kernel.msgmax", "value": "65536"}]})
    assert checks(unsafe, "baseline") == {"sysctls"}


def test_selinux_and_apparmor_and_proc_mount():
    engine = pod(pod_sc={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"},
                         "seLinuxOptions": {"type": "container_engine_t"}})
    assert checks(engine, "baseline", "v1.31") == set() and checks(engine, "baseline", "v1.30") == {"seLinuxOptions"}
    assert checks(pod(pod_sc={"seLinuxOptions": {"user": "system_u"}}), "baseline") == {"seLinuxOptions"}
    unconfined = pod(pod_sc={"appArmorProfile": {"type": "Unconfined"}})
    assert checks(unconfined, "baseline") == {"appArmorProfile"}
    annotated = pod()
    annotated["metadata"]["annotations"] = {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}
    assert checks(annotated, "baseline") == {"appArmorProfile"}
    unmasked = pod(spec_extra={"hostUsers": False}, container_extra={"securityContext": {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "procMount": "Unmasked"}})
    assert checks(unmasked, "baseline") == {"procMount"}, "v1.33 has no user-namespace relaxation (v1.35)"


def test_probe_host_check_starts_at_v1_34():
    obj = pod(container_extra={"livenessProbe": {"httpGet": {"host": "10.0.0.7", "port": 8000, "path": "/health"}}})
    valid(obj)
    assert checks(obj, "baseline", "v1.33") == set(), "not part of v1.33"
    assert checks(obj, "baseline", "v1.34") == {"hostProbesAndHostLifecycle"}


def test_windows_pods_skip_the_linux_only_restricted_checks():
    obj = pod(spec_extra={"os": {"name": "windows"}}, pod_sc={"runAsNonRoot": True},
              container_extra={"securityContext": {}})
    assert checks(obj, "restricted") == set()
    obj["spec"]["os"]["name"] = "linux"
    assert checks(obj, "restricted") == {"allowPrivilegeEscalation", "seccompProfile_restricted", "capabilities_restricted"}


def test_privileged_level_and_unsupported_versions():
    assert check_pod_spec(ESCAPES["privileged"][0]["spec"], {}, "privileged", VERSION) == []
    for bad in ("v1.35", "latest", "1.33", "v1.24"):
        with pytest.raises(pod_security.UnsupportedVersion):
            check_pod_spec({}, {}, "baseline", bad)


def test_labels_are_built_in_one_place():
    labels = pod_security_labels(config.PodSecurityConfig(enforce="restricted"))
    assert tenant_labels("restricted") == {"llm-platform/kueue-managed": "true", **labels}


# ------------------------------------------------------------------ live check (`make verify`) offline


class FakeApiException(Exception):
    def __init__(self, status, body):
        super().__init__(body)
        self.status, self.body = status, body


class PsaModelApi:
    """Stands in for the API server: PodSecurity decides from the namespace labels (the checker)."""

    def __init__(self, labels):
        self.labels, self.dry_runs = labels, []

    def read_namespace(self, name):
        from types import SimpleNamespace
        return SimpleNamespace(metadata=SimpleNamespace(labels=self.labels))

    def create_namespaced_pod(self, namespace, body, dry_run=None):
        self.dry_runs.append(dry_run)
        decision = admit(self.labels, body)
        if not decision.allowed:
            level = self.labels[f"{PSA}enforce"] + ":" + self.labels[f"{PSA}enforce-version"]
            raise FakeApiException(403, f'pods "{body["metadata"]["name"]}" is forbidden: violates PodSecurity '
                                        f'"{level}": {"; ".join(map(str, decision.enforce))}')


@pytest.fixture
def kube_exceptions(monkeypatch):
    import kubernetes.client.rest as rest
    monkeypatch.setattr(rest, "ApiException", FakeApiException)


def test_live_check_passes_on_a_labelled_tenant_namespace(kube_exceptions):
    from tools import verify
    api = PsaModelApi(tenant_labels("baseline"))
    rows = verify.pod_security(api, ["team-a"])
    assert [r.check for r in rows] == ["PSA-a", "PSA-b", "PSA-c", "PSA-d"]
    assert all(r.status == "PASS" for r in rows), verify.table(rows)
    assert api.dry_runs == ["All"] * 4, "the live check never creates a pod"


def test_live_check_fails_on_an_unlabelled_namespace(kube_exceptions):
    from tools import verify
    rows = verify.pod_security(PsaModelApi({}), ["team-a"])
    assert [r.status for r in rows] == ["FAIL"] and "enforce" in rows[0].detail, verify.table(rows)


def test_live_check_decisions():
    from tools import verify
    assert verify.classify_pod_security(None)[0] == "FAIL"
    assert verify.classify_pod_security(FakeApiException(403, 'violates PodSecurity "baseline:v1.33": host namespaces'))[0] == "PASS"
    assert verify.classify_pod_security(FakeApiException(403, "forbidden: RBAC"))[0] == "FAIL", "another refusal is no proof"
    assert verify.classify_pod_security(FakeApiException(400, "admission webhook denied"))[0] == "FAIL"
    assert verify.stack_tenants("prod") == ["team-a", "team-b", "team-c"]


@pytest.mark.parametrize("create_missing", [False, True], ids=["existing-cluster-patch", "create"])
def test_both_namespace_paths_carry_the_pod_security_labels(create_missing):
    """createTenantNamespaces false patches existing namespaces (NamespacePatch): the labels go there too."""
    import pulumi

    from components.tenants import TenantNamespaces, TenantNamespacesArgs

    mockrun.install()
    level = config.PodSecurityConfig(enforce="restricted")

    @pulumi.runtime.test
    def run():
        tn = TenantNamespaces("t", TenantNamespacesArgs(tenants=["team-a"], create_missing=create_missing,
                                                           pod_security=level))
        (ns,) = tn.namespaces
        want = "Namespace" if create_missing else "NamespacePatch"
        assert type(ns).__name__ == want

        def check(metadata):
            labels = metadata["labels"]
            assert labels[f"{PSA}enforce"] == "restricted", labels
            assert labels[f"{PSA}enforce-version"] == VERSION, labels
            assert labels[f"{PSA}warn"] == "restricted" and labels[f"{PSA}audit"] == "restricted", labels

        return ns.metadata.apply(check)

    run()
