"""`make bench-isolation`: Job manifests, parsing and reporting offline; the cluster run with a fake kubectl."""

from __future__ import annotations

import json
import subprocess

import pytest

from tools import bench_isolation as b

LLAMA_BENCH_JSON = [
    {"model_type": "qwen2 1B Q4_K - Medium", "n_prompt": 0, "n_gen": 64, "avg_ts": 41.25, "stddev_ts": 0.8},
]


def _log(tps=41.25, rss=612345):
    rows = [dict(LLAMA_BENCH_JSON[0], avg_ts=tps)]
    return f"some curl noise\n{b.RESULT_MARK}{json.dumps(rows)}\n{b.RSS_MARK}{rss}\n"


def _pod(name, scheduled="2026-11-26T05:00:00Z", started="2026-11-26T05:00:07Z", node="n1", state="terminated"):
    return {
        "metadata": {"name": name},
        "spec": {"nodeName": node},
        "status": {
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-26T04:59:00Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": scheduled},
            ],
            "containerStatuses": [{"name": "bench", "state": {state: {"startedAt": started}}}],
        },
    }


def test_job_manifests_differ_only_in_runtime():
    w = b.Workload()
    runc, gvisor = b.job_manifest("runc", 0, w), b.job_manifest("gvisor", 0, w)
    assert gvisor["spec"]["template"]["spec"]["runtimeClassName"] == "gvisor"
    assert "runtimeClassName" not in runc["spec"]["template"]["spec"]
    strip = lambda j: {k: v for k, v in j["spec"]["template"]["spec"].items() if k != "runtimeClassName"}  # noqa: E731
    assert strip(runc) == strip(gvisor), "the two runtimes must run the same container"
    pod = gvisor["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    res = pod["containers"][0]["resources"]
    assert res["requests"] == res["limits"], "Guaranteed QoS in both runtimes"
    assert gvisor["metadata"]["namespace"] == b.NAMESPACE and gvisor["spec"]["backoffLimit"] == 0
    assert b.job_manifest("runc", 0, b.Workload(runc_node_pool="system"))["spec"]["template"]["spec"]["nodeSelector"] == {
        "cloud.google.com/gke-nodepool": "system"
    }
    with pytest.raises(ValueError):
        b.job_manifest("kata", 0, w)


def test_job_manifest_is_valid_kubernetes():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for rt in b.RUNTIMES:
        kubernetes_validate.validate(b.job_manifest(rt, 3, b.Workload()), "1.33.0", strict=True)


def test_parse_logs():
    assert b.parse_logs(_log(12.5, 2048)) == (12.5, 2048)
    with pytest.raises(b.BenchError, match="BENCH_RESULT"):
        b.parse_logs("curl: (22) The requested URL returned error: 404\n")
    with pytest.raises(b.BenchError, match="n_gen"):
        b.parse_logs(f"{b.RESULT_MARK}{json.dumps([{'n_prompt': 512, 'n_gen': 0, 'avg_ts': 900.0}])}\n{b.RSS_MARK}10\n")
    with pytest.raises(b.BenchError, match="VmHWM"):
        b.parse_logs(_log(rss=0))
    with pytest.raises(b.BenchError, match="not parseable"):
        b.parse_logs(f"{b.RESULT_MARK}[{{\n{b.RSS_MARK}10\n")


def test_cold_start_from_pod_status():
    assert b.cold_start_seconds(_pod("p")) == 7.0
    assert b.cold_start_seconds(_pod("p", started="2026-11-26T05:00:03Z", state="running")) == 3.0
    unscheduled = _pod("p")
    unscheduled["status"]["conditions"] = unscheduled["status"]["conditions"][:1]
    with pytest.raises(b.BenchError, match="not scheduled"):
        b.cold_start_seconds(unscheduled)
    waiting = _pod("p")
    waiting["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "ErrImagePull"}}
    with pytest.raises(b.BenchError, match="never started"):
        b.cold_start_seconds(waiting)


def test_percentile_nearest_rank():
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert b.percentile(values, 50) == 3.0 and b.percentile(values, 95) == 5.0 and b.percentile([7.0], 95) == 7.0
    assert b.percentile(list(map(float, range(1, 21))), 95) == 19.0
    with pytest.raises(ValueError):
        b.percentile([], 50)


def test_summary_table_with_overheads():
    samples = [b.Sample("runc", c, 40.0, 500 * 1024, machine_type="e2-standard-4") for c in (2, 3, 4)] + [
        b.Sample("gvisor", c, 30.0, 600 * 1024, machine_type="e2-standard-4") for c in (3, 4, 6)
    ]
    s = b.summarize(samples)
    assert (s["runc"].cold_start_p50, s["runc"].cold_start_p95) == (3, 4)
    assert (s["gvisor"].cold_start_p50, s["gvisor"].cold_start_p95) == (4, 6)
    table = b.render_table(s)
    assert "| runc | 3 | 3.0 | 4.0 | 40.00 | 500.0 | e2-standard-4 |" in table, table
    assert "| gvisor | 3 | 4.0 | 6.0 | 30.00 | 600.0 | e2-standard-4 |" in table, table
    assert "| gVisor vs runc | | +33.3% | +50.0% | -25.0% | +20.0% | |" in table, table


class FakeKubectl:
    """Answers the harness's kubectl calls like a cluster with a gvisor RuntimeClass would."""

    def __init__(self, runtimeclass=True, reachable=True):
        self.runtimeclass, self.reachable = runtimeclass, reachable
        self.calls: list[list[str]] = []
        self.applied: list[dict] = []

    def __call__(self, cmd, stdin=None):
        self.calls.append(cmd)
        ok = lambda out="": subprocess.CompletedProcess(cmd, 0, out, "")  # noqa: E731
        args = cmd[cmd.index("kubectl") + 1:] if "kubectl" in cmd else cmd
        while args and args[0] in ("--kubeconfig", "--context"):
            args = args[2:]
        if cmd[0] == "pulumi":
            return ok("apiVersion: v1\nkind: Config\n")
        if not self.reachable:
            return subprocess.CompletedProcess(cmd, 1, "", "Unable to connect to the server: dial tcp: i/o timeout")
        if args[:2] == ["get", "runtimeclass"]:
            if self.runtimeclass:
                return ok("runtimeclass.node.k8s.io/gvisor\n")
            return subprocess.CompletedProcess(cmd, 1, "", 'Error from server (NotFound): runtimeclasses.node.k8s.io "gvisor" not found')
        if args[:1] == ["apply"]:
            self.applied.append(json.loads(stdin))
            return ok()
        if args[:2] == ["get", "pods"]:
            job = args[args.index("-l") + 1].split("=", 1)[1]
            started = "2026-11-26T05:00:09Z" if "gvisor" in job else "2026-11-26T05:00:04Z"
            return ok(json.dumps({"items": [_pod(f"{job}-abcde", started=started)]}))
        if args[:1] == ["logs"]:
            gv = "gvisor" in args[-1]
            return ok(_log(30.0 if gv else 40.0, 700 * 1024 if gv else 600 * 1024))
        if args[:2] == ["get", "node"]:
            return ok(json.dumps({"metadata": {"labels": {"node.kubernetes.io/instance-type": "e2-standard-4"}}}))
        return ok()


def test_full_run_against_a_fake_cluster(tmp_path, capsys):
    fake = FakeKubectl()
    out = tmp_path / "r.json"
    rc = b.main(["--stack", "dev", "--runs", "2", "--context", "ctx", "--out", str(out)], runner=fake, which=lambda _: "/bin/x")
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| runc | 2 | 4.0 | 4.0 | 40.00 | 600.0 | e2-standard-4 |" in printed, printed
    assert "| gvisor | 2 | 9.0 | 9.0 | 30.00 | 700.0 | e2-standard-4 |" in printed, printed
    jobs = [a for a in fake.applied if a["kind"] == "Job"]
    assert [j["metadata"]["name"] for j in jobs] == ["bench-runc-0", "bench-gvisor-0", "bench-runc-1", "bench-gvisor-1"]
    assert any(c[-4:] == ["namespace", b.NAMESPACE, "--ignore-not-found", "--wait=false"] for c in fake.calls), "namespace cleaned up"
    assert all("--context" in c for c in fake.calls if c[0] == "kubectl")
    data = json.loads(out.read_text())
    assert len(data["samples"]) == 4 and data["summary"]["gvisor"]["tokens_per_s"] == 30.0


@pytest.mark.parametrize("which, fake, reason", [
    (lambda _: None, FakeKubectl(), "kubectl is not installed"),
    (lambda name: None if name == "pulumi" else "/bin/x", FakeKubectl(), "has no `kubeconfig` output"),
    (lambda _: "/bin/x", FakeKubectl(runtimeclass=False), "no RuntimeClass `gvisor`"),
    (lambda _: "/bin/x", FakeKubectl(reachable=False), "not reachable"),
])
def test_skips_with_a_clear_reason(which, fake, reason, capsys, monkeypatch):
    monkeypatch.setattr(b.shutil, "which", which)
    rc = b.main(["--stack", "dev"], runner=fake, which=which)
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("SKIP: ") and reason in out, out
    assert not any(c[:1] == ["kubectl"] and "apply" in c for c in fake.calls), "nothing may be applied when skipping"


def test_failed_run_is_an_error_not_a_number(tmp_path, capsys):
    fake = FakeKubectl()
    real = fake.__call__

    def broken(cmd, stdin=None):
        if "logs" in cmd:
            return subprocess.CompletedProcess(cmd, 0, "curl: (6) Could not resolve host: huggingface.co\n", "")
        return real(cmd, stdin)

    rc = b.main(["--stack", "dev", "--runs", "1", "--context", "c", "--out", str(tmp_path / "x.json")], runner=broken, which=lambda _: "/bin/x")
    assert rc == 1 and "BENCH_RESULT" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
