"""`make verify`: the live checks' decisions, offline; and the clear skip when no cluster is reachable."""

import subprocess
import sys

import pytest

from components.config import NetworkPolicyConfig
from components.platform_facts import PROMETHEUS_LABELS
from tools import verify
from tools.verify import Row


class FakeApiException(Exception):
    def __init__(self, status, body):
        super().__init__(body)
        self.status, self.body = status, body


KYVERNO_DENIAL = (
    '{"message":"admission webhook \\"validate.kyverno.svc-fail\\" denied the request: '
    'require-kueue-queue-name: GPU Pods ... must set a non-empty label kueue.x-k8s.io/queue-name"}'
)


@pytest.mark.parametrize(
    "exit_code,http,expected",
    # a 403 is an answer: the network let the probe through (a server refused it), so SR1 is not blocking
    [(28, "000", "PASS"), (7, "000", "PASS"), (0, "200", "FAIL"), (0, "503", "FAIL"), (0, "403", "FAIL")],
    ids=["timeout", "refused", "answered-200", "answered-503", "answered-403"],
)
def test_sr1_default_to_serving_must_get_no_answer(exit_code, http, expected):
    status, detail = verify.classify_denied_probe(exit_code, http)
    assert status == expected, f"SR1-a: curl exit {exit_code}, HTTP {http} -> {status} ({detail})"


@pytest.mark.parametrize(
    "exit_code,http,expected",
    [(0, "200", "PASS"), (28, "000", "FAIL"), (0, "403", "FAIL"), (None, "", "FAIL")],
    ids=["200", "timeout", "403", "pod-never-finished"],
)
def test_sr1_monitoring_to_serving_must_get_200(exit_code, http, expected):
    assert verify.classify_allowed_probe(exit_code, http)[0] == expected


def test_sr2_denial_naming_the_label_passes():
    assert verify.classify_admission(True, FakeApiException(400, KYVERNO_DENIAL))[0] == "PASS"


def test_sr2_unlabelled_gpu_pod_admitted_fails():
    status, detail = verify.classify_admission(True, None)
    assert status == "FAIL" and "did not deny" in detail


def test_sr2_rejection_for_another_reason_fails():
    assert verify.classify_admission(True, FakeApiException(403, "forbidden: RBAC"))[0] == "FAIL"


def test_sr2_labelled_pod_admitted_passes_and_rejected_fails():
    assert verify.classify_admission(False, None)[0] == "PASS"
    assert verify.classify_admission(False, FakeApiException(400, KYVERNO_DENIAL))[0] == "FAIL"


def test_table_and_exit_code():
    rows = [Row("SR1-a", "default -> serving times out", "PASS", "ok"), Row("SR2-a", "denied", "SKIP", "why")]
    text = verify.table(rows)
    assert text.splitlines()[0].split()[:3] == ["check", "description", "result"]
    assert "SR1-a" in text and "SKIP" in text
    assert verify.exit_code(rows) == 0
    assert verify.exit_code(rows + [Row("SR2-b", "admitted", "FAIL", "x")]) == 1


def test_probe_and_gpu_pods_are_least_privilege():
    curl = verify.curl_pod("p", "http://x")
    assert curl["spec"]["automountServiceAccountToken"] is False
    assert curl["spec"]["securityContext"]["runAsNonRoot"] is True
    assert "--max-time" in curl["spec"]["containers"][0]["command"]
    labelled, bare = verify.gpu_pod("a", True), verify.gpu_pod("b", False)
    assert labelled["metadata"]["labels"][verify.QUEUE_LABEL] == "verify"
    assert verify.QUEUE_LABEL not in bare["metadata"]["labels"]
    assert bare["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_no_cluster_skips_with_a_clear_reason(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tools.verify", "--stack", "dev", "--kubeconfig", str(tmp_path / "nonexistent")],
        cwd=verify.__file__.rsplit("/tools/", 1)[0], capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == verify.EXIT_NO_CLUSTER, result.stdout + result.stderr
    assert result.stdout.startswith("SKIP: no reachable cluster for stack dev"), result.stdout
    assert "does not exist" in result.stdout and "--kubeconfig" in result.stdout


def test_unreachable_api_server_skips(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n"
        "contexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {token: x}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "tools.verify", "--stack", "dev", "--kubeconfig", str(kubeconfig)],
        cwd=verify.__file__.rsplit("/tools/", 1)[0], capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == verify.EXIT_NO_CLUSTER, result.stdout + result.stderr
    assert "SKIP: no reachable cluster" in result.stdout


# ------------------------------------------------------------------ SR1 targets (section 3 + vLLM + gateways)


class _Obj:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class FakeCore:
    """CoreV1Api stand-in: Services per namespace with a port and a number of ready addresses."""

    def __init__(self, services):
        self.services = services  # {(ns, name): (port, ready)}

    def list_namespaced_service(self, ns):
        items = [
            _Obj(metadata=_Obj(name=name), spec=_Obj(ports=[_Obj(port=port)]))
            for (n, name), (port, _) in self.services.items() if n == ns
        ]
        return _Obj(items=items)

    def read_namespaced_endpoints(self, name, ns):
        _, ready = self.services[(ns, name)]
        return _Obj(subsets=[_Obj(addresses=[object()] * ready)] if ready else None)


REFERENCE_SERVICES = {
    ("serving", "embeddings"): (80, 1),
    ("serving", "raw-vllm"): (8000, 0),  # replicas: 0 in the reference
    ("serving", "coder-chat"): (8000, 1),
    ("inference", "inference-gateway"): (80, 1),
}


def _answers(calls, trusted=None):
    """A cluster that enforces SR1 by pod: only a pod of `monitoring` with the trusted labels gets an answer."""
    trusted = PROMETHEUS_LABELS if trusted is None else trusted

    def run(api, source, url, timeout, labels):
        calls.append((source, url))
        ok = source == "monitoring" and trusted.items() <= labels.items()
        return (0, "200") if ok else (28, "000")

    return run


def test_sr1_runs_the_section_3_check_as_written():
    calls = []
    rows = {r.check: r for r in verify.sr1(FakeCore(REFERENCE_SERVICES), None, 5, run=_answers(calls))}
    assert ("default", "http://embeddings.serving.svc.cluster.local/health") in calls, calls
    assert ("monitoring", "http://embeddings.serving.svc.cluster.local/health") in calls, calls
    assert rows["SR1-a"].status == "PASS" and rows["SR1-b"].status == "PASS", rows


def test_sr1_vllm_check_uses_a_service_with_ready_endpoints():
    calls = []
    rows = {r.check: r for r in verify.sr1(FakeCore(REFERENCE_SERVICES), None, 5, run=_answers(calls))}
    # raw-vllm is scaled to 0: the check must use coder-chat on its Service port, not time out on raw-vllm.
    assert ("monitoring", "http://coder-chat.serving.svc.cluster.local:8000/health") in calls, calls
    assert not any("raw-vllm" in url for _, url in calls), calls
    assert rows["SR1-c"].status == "PASS" and rows["SR1-d"].status == "PASS", rows


def test_sr1_reports_flows_whose_targets_are_absent():
    calls = []
    rows = verify.sr1(FakeCore(REFERENCE_SERVICES), None, 5, run=_answers(calls))
    by = {r.check: r for r in rows}
    for check, ns in (("SR1-f", "kserve"), ("SR1-g", "llm-d")):
        assert by[check].status == "SKIP" and "target absent" in by[check].detail and ns in by[check].detail, by[check]
    assert by["SR1-e"].status == "PASS"
    lines = verify.untested(rows)
    assert len(lines) == 2 and all("not tested" in line for line in lines), lines
    assert verify.exit_code(rows) == verify.EXIT_OK


def test_sr1_scaled_to_zero_target_is_skipped_not_passed():
    services = {("serving", "embeddings"): (80, 0)}
    calls = []
    rows = {r.check: r for r in verify.sr1(FakeCore(services), None, 5, run=_answers(calls))}
    assert rows["SR1-a"].status == "SKIP" and "no ready endpoint" in rows["SR1-a"].detail, rows["SR1-a"]
    assert not calls, "nothing may be probed when no target is ready"


def test_sr1_fails_when_the_policy_lets_default_in():
    def open_everything(api, source, url, timeout, labels):
        return 0, "200"

    rows = {r.check: r for r in verify.sr1(FakeCore(REFERENCE_SERVICES), None, 5, run=open_everything)}
    assert rows["SR1-a"].status == "FAIL" and rows["SR1-b"].status == "PASS"
    assert verify.exit_code(list(rows.values())) == verify.EXIT_FAIL


def test_sr1_serving_url_overrides_only_the_vllm_target():
    calls = []
    verify.sr1(FakeCore(REFERENCE_SERVICES), "http://x.serving.svc:8000/health", 5, run=_answers(calls))
    assert ("monitoring", "http://x.serving.svc:8000/health") in calls
    assert ("monitoring", "http://embeddings.serving.svc.cluster.local/health") in calls


# ------------------------------------------------------------------ SR1 trusts pods of monitoring, not the namespace


def _labelled_calls():
    calls = []

    def run(api, source, url, timeout, labels):
        calls.append((source, url, dict(labels)))
        return (0, "200") if source == "monitoring" and labels else (28, "000")

    return calls, run


def test_sr1_monitoring_probes_carry_a_trusted_pods_labels():
    calls, run = _labelled_calls()
    rows = {r.check: r for r in verify.sr1(FakeCore(REFERENCE_SERVICES), None, 5, run=run)}
    embeddings = "http://embeddings.serving.svc.cluster.local/health"
    want = NetworkPolicyConfig().trusted_pods["monitoring"][0]
    assert ("monitoring", embeddings, want) in calls, calls  # SR1-b as Prometheus
    assert ("monitoring", embeddings, {}) in calls, calls  # SR1-h as any other pod
    assert all(labels == {} for source, _, labels in calls if source == "default"), calls
    assert rows["SR1-b"].status == "PASS" and rows["SR1-d"].status == "PASS" and rows["SR1-h"].status == "PASS", rows
    assert "app.kubernetes.io/name=prometheus" in rows["SR1-b"].detail, rows["SR1-b"].detail


def test_sr1_fails_when_monitoring_is_trusted_whole():
    # Control: a cluster that still admits every pod of monitoring answers the unlabelled probe.
    def namespace_wide(api, source, url, timeout, labels):
        return (0, "200") if source == "monitoring" else (28, "000")

    rows = {r.check: r for r in verify.sr1(FakeCore(REFERENCE_SERVICES), None, 5, run=namespace_wide)}
    assert rows["SR1-h"].status == "FAIL" and rows["SR1-b"].status == "PASS", rows
    assert verify.exit_code(list(rows.values())) == verify.EXIT_FAIL


def test_sr1_probe_labels_follow_the_stack_config():
    grafana = {"app.kubernetes.io/name": "grafana"}
    cfg = NetworkPolicyConfig(allowed_from_pods={"monitoring": [grafana]})
    calls = []
    rows = {r.check: r for r in verify.sr1(FakeCore(REFERENCE_SERVICES), None, 5, run=_answers(calls, grafana),
                                           trusted_pods=cfg.trusted_pods)}
    assert rows["SR1-b"].status == "PASS" and "app.kubernetes.io/name=grafana" in rows["SR1-b"].detail, rows["SR1-b"]


def test_sr1_monitoring_not_trusted_skips_the_trusted_probes():
    cfg = NetworkPolicyConfig(allowed_from=["litellm", "inference"])
    calls = []
    rows = {r.check: r for r in verify.sr1(FakeCore(REFERENCE_SERVICES), None, 5, run=_answers(calls),
                                           trusted_pods=cfg.trusted_pods)}
    for check in ("SR1-b", "SR1-d"):
        assert rows[check].status == "SKIP" and "allowedFrom" in rows[check].detail, rows[check]
    assert rows["SR1-h"].status == "PASS", rows["SR1-h"]


def test_trusted_probe_pod_keeps_its_own_label_and_serves_nothing():
    pod = verify.curl_pod("p", "http://x", PROMETHEUS_LABELS)
    assert pod["metadata"]["labels"] == {"app": "llm-platform-verify", **PROMETHEUS_LABELS}
    assert all("ports" not in c for c in pod["spec"]["containers"]), "no Service may route to the probe"
