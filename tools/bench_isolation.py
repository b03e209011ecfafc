"""runc vs GKE Sandbox (gVisor) benchmark: `make bench-isolation STACK=<stack> [RUNS=5]`.

Runs the same CPU inference Job ``RUNS`` times under each runtime on the stack's cluster and reports

* cold start p50/p95: the pod's ``PodScheduled`` condition -> its container's ``startedAt`` (image
  pull on a fresh node + sandbox/container creation; the API reports whole seconds),
* tokens/s: ``llama-bench`` generation throughput (``avg_ts`` of its JSON output), median,
* peak RSS: the benchmark process's ``VmHWM`` from ``/proc/<pid>/status``, median,

with the gVisor overhead against runc, as a markdown table (stdout) and JSON
(``build/bench-isolation-<stack>.json``).

Workload: ``llama-bench`` from the llama.cpp ``full`` image on a small GGUF model downloaded from
Hugging Face in the pod (``--image``, ``--model-url``, ``--tokens`` change it). The Jobs run in a
namespace of their own (``isolation-bench``, deleted afterwards), without a service-account token;
gVisor pods carry ``runtimeClassName: gvisor`` (GKE's RuntimeClass adds the sandbox pool's node
selector and toleration), runc pods run on the other pools -- compare like with like by giving the
sandbox pool the machine type of ``--runc-node-pool`` (the table prints both nodes' machine types).

Cluster access: ``--kubeconfig``/``--context``; otherwise the stack's ``kubeconfig`` output
(``pulumi stack output kubeconfig --show-secrets``). Without ``kubectl``, without a reachable
cluster, or without the RuntimeClass ``gvisor`` it prints ``SKIP: <reason>`` and exits 0: nothing
is measured, nothing is invented.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "isolation-bench"
RUNTIMES = ("runc", "gvisor")
DEFAULT_IMAGE = "ghcr.io/ggml-org/llama.cpp:full"
DEFAULT_MODEL_URL = (
    "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf"
)
RESULT_MARK = "BENCH_RESULT "
RSS_MARK = "BENCH_RSS_KB "

# Runs in the benchmark container. Polls the benchmark's VmHWM (peak RSS) while it runs: gVisor's
# /proc implements it, so both runtimes are measured the same way.
SCRIPT = r"""set -eu
curl -fsSL --retry 3 -o /tmp/model.gguf "$MODEL_URL"
"$BENCH_BIN" -m /tmp/model.gguf -p 0 -n "$TOKENS" -r 3 -t "$THREADS" -o json > /tmp/bench.json &
pid=$!
hwm=0
while kill -0 "$pid" 2>/dev/null; do
  v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  if [ -n "$v" ] && [ "$v" -gt "$hwm" ]; then hwm=$v; fi
  sleep 0.2
done
wait "$pid"
echo "BENCH_RESULT $(tr -d '\n' < /tmp/bench.json)"
echo "BENCH_RSS_KB $hwm"
"""


class Skip(Exception):
    """The benchmark cannot run here; the message says why."""


class BenchError(RuntimeError):
    """A run failed or printed something unparseable."""


# ---------------------------------------------------------------- manifests


@dataclass(frozen=True)
class Workload:
    image: str = DEFAULT_IMAGE
    model_url: str = DEFAULT_MODEL_URL
    tokens: int = 64
    threads: int = 2
    bench_bin: str = "/app/llama-bench"
    cpu: str = "2"
    memory: str = "2Gi"
    runc_node_pool: Optional[str] = None


def job_manifest(runtime: str, run: int, w: Workload) -> dict[str, Any]:
    """The Job of one run: identical for both runtimes except ``runtimeClassName`` (and node pool)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: use one of {RUNTIMES}")
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "containers": [{
            "name": "bench",
            "image": w.image,
            "command": ["/bin/sh", "-c", SCRIPT],
            "env": [
                {"name": "MODEL_URL", "value": w.model_url},
                {"name": "TOKENS", "value": str(w.tokens)},
                {"name": "THREADS", "value": str(w.threads)},
                {"name": "BENCH_BIN", "value": w.bench_bin},
            ],
            # Guaranteed QoS: the same CPU and memory in both runtimes.
            "resources": {"requests": {"cpu": w.cpu, "memory": w.memory}, "limits": {"cpu": w.cpu, "memory": w.memory}},
        }],
    }
    if runtime == "gvisor":
        pod["runtimeClassName"] = "gvisor"
    elif w.runc_node_pool:
        pod["nodeSelector"] = {"cloud.google.com/gke-nodepool": w.runc_node_pool}
    name = f"bench-{runtime}-{run}"
    labels = {"app.kubernetes.io/name": "bench-isolation", "bench/runtime": runtime}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 3600,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


# ---------------------------------------------------------------- parsing


@dataclass
class Sample:
    runtime: str
    cold_start_s: float
    tokens_per_s: float
    rss_kb: int
    node: str = ""
    machine_type: str = ""


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def cold_start_seconds(pod: dict[str, Any]) -> float:
    """``PodScheduled`` -> the first container's ``startedAt`` (running or terminated state)."""
    scheduled = next(
        (c["lastTransitionTime"] for c in pod.get("status", {}).get("conditions", [])
         if c.get("type") == "PodScheduled" and c.get("status") == "True"), None,
    )
    statuses = pod.get("status", {}).get("containerStatuses", [])
    if scheduled is None or not statuses:
        raise BenchError(f"pod {pod.get('metadata', {}).get('name')}: not scheduled or no container status")
    state = statuses[0].get("state", {})
    started = (state.get("terminated") or state.get("running") or {}).get("startedAt")
    if not started:
        raise BenchError(f"pod {pod['metadata'].get('name')}: container never started ({state})")
    return (_ts(started) - _ts(scheduled)).total_seconds()


def parse_logs(text: str) -> tuple[float, int]:
    """(tokens/s, peak RSS kB) from the benchmark container's log."""
    tps = rss = None
    for line in text.splitlines():
        if line.startswith(RESULT_MARK):
            try:
                rows = json.loads(line[len(RESULT_MARK):])
            except json.JSONDecodeError as e:
                raise BenchError(f"llama-bench JSON is not parseable: {e}") from e
            gen = [r for r in rows if r.get("n_gen", 0) > 0 and "avg_ts" in r]
            if not gen:
                raise BenchError("llama-bench printed no generation result (n_gen > 0 with avg_ts)")
            tps = float(gen[0]["avg_ts"])
        elif line.startswith(RSS_MARK):
            rss = int(line[len(RSS_MARK):].strip())
    if tps is None or rss is None:
        raise BenchError(f"log lacks {RESULT_MARK.strip()} and/or {RSS_MARK.strip()} lines: {text[-500:]!r}")
    if rss <= 0:
        raise BenchError("peak RSS was never observed (VmHWM 0)")
    return tps, rss


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Summary:
    runtime: str
    runs: int
    cold_start_p50: float
    cold_start_p95: float
    tokens_per_s: float
    rss_mb: float
    machine_types: list[str] = field(default_factory=list)


def summarize(samples: list[Sample]) -> dict[str, Summary]:
    out = {}
    for rt in RUNTIMES:
        s = [x for x in samples if x.runtime == rt]
        if not s:
            continue
        out[rt] = Summary(
            runtime=rt,
            runs=len(s),
            cold_start_p50=percentile([x.cold_start_s for x in s], 50),
            cold_start_p95=percentile([x.cold_start_s for x in s], 95),
            tokens_per_s=statistics.median(x.tokens_per_s for x in s),
            rss_mb=statistics.median(x.rss_kb for x in s) / 1024,
            machine_types=sorted({x.machine_type for x in s if x.machine_type}),
        )
    return out


def _overhead(base: float, other: float) -> str:
    if base == 0:
        return "n/a"
    return f"{(other - base) / base * 100:+.1f}%"


def render_table(summaries: dict[str, Summary]) -> str:
    head = "| runtime | runs | cold start p50 (s) | cold start p95 (s) | tokens/s (median) | peak RSS MiB (median) | machine type |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for rt in RUNTIMES:
        if rt in summaries:
            s = summaries[rt]
            lines.append(
                f"| {rt} | {s.runs} | {s.cold_start_p50:.1f} | {s.cold_start_p95:.1f} | {s.tokens_per_s:.2f} | "
                f"{s.rss_mb:.1f} | {', '.join(s.machine_types) or '?'} |"
            )
    if set(RUNTIMES) <= set(summaries):
        r, g = summaries["runc"], summaries["gvisor"]
        lines.append(
            f"| gVisor vs runc | | {_overhead(r.cold_start_p50, g.cold_start_p50)} | "
            f"{_overhead(r.cold_start_p95, g.cold_start_p95)} | {_overhead(r.tokens_per_s, g.tokens_per_s)} | "
            f"{_overhead(r.rss_mb, g.rss_mb)} | |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- cluster


Runner = Callable[[list[str], Optional[str]], subprocess.CompletedProcess]


def _run(cmd: list[str], stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=1800)


class Kubectl:
    def __init__(self, base: list[str], runner: Runner = _run):
        self.base = base
        self.runner = runner

    def __call__(self, *args: str, stdin: Optional[str] = None, check: bool = True) -> str:
        proc = self.runner(self.base + list(args), stdin)
        if check and proc.returncode != 0:
            raise BenchError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
        return proc.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json"))


def stack_kubeconfig(stack: str, runner: Runner = _run) -> Optional[str]:
    """The stack's `kubeconfig` output, or None when the Pulumi CLI or the output is unavailable."""
    if shutil.which("pulumi") is None:
        return None
    proc = runner(["pulumi", "stack", "output", "kubeconfig", "--show-secrets", "--stack", stack], None)
    return proc.stdout if proc.returncode == 0 and proc.stdout.strip() else None


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def connect(args: argparse.Namespace, runner: Runner = _run, which=shutil.which) -> Kubectl:
    """A kubectl bound to the stack's cluster, or :class:`Skip` with the reason."""
    if which("kubectl") is None:
        raise Skip("kubectl is not installed (needed to run the benchmark Jobs on the stack's cluster)")
    base = ["kubectl"]
    if args.kubeconfig:
        base += ["--kubeconfig", args.kubeconfig]
    elif not args.context:
        content = stack_kubeconfig(args.stack, runner)
        if content is None:
            raise Skip(
                f"no cluster: the stack {args.stack!r} has no `kubeconfig` output here (Pulumi CLI missing, not "
                "logged in, or the stack is not deployed); pass --kubeconfig/--context to use another cluster"
            )
        fd, path = tempfile.mkstemp(prefix="bench-kubeconfig-")
        atexit.register(_remove, path)  # it holds credentials: gone when the process ends, whatever happens
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
        base += ["--kubeconfig", path]
    if args.context:
        base += ["--context", args.context]
    kc = Kubectl(base, runner)
    probe = runner(base + ["get", "runtimeclass", "gvisor", "-o", "name"], None)
    if probe.returncode != 0:
        err = probe.stderr.strip()
        if "NotFound" in err or "not found" in err:
            raise Skip("the cluster has no RuntimeClass `gvisor`: add a node pool with `sandbox: true` (GKE Sandbox)")
        raise Skip(f"the cluster is not reachable: {err[-300:] or 'kubectl failed'}")
    return kc


def run_one(kc: Kubectl, runtime: str, run: int, w: Workload, timeout_s: int = 900) -> Sample:
    job = job_manifest(runtime, run, w)
    name = job["metadata"]["name"]
    kc("delete", "job", name, "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
    kc("apply", "-f", "-", stdin=json.dumps(job))
    kc("wait", f"job/{name}", "-n", NAMESPACE, "--for=condition=complete", f"--timeout={timeout_s}s")
    pods = kc.json("get", "pods", "-n", NAMESPACE, "-l", f"job-name={name}")["items"]
    if len(pods) != 1:
        raise BenchError(f"job {name}: expected one pod, found {len(pods)}")
    pod = pods[0]
    tps, rss = parse_logs(kc("logs", "-n", NAMESPACE, pod["metadata"]["name"]))
    node = pod["spec"].get("nodeName", "")
    machine = ""
    if node:
        labels = kc.json("get", "node", node)["metadata"].get("labels", {})
        machine = labels.get("node.kubernetes.io/instance-type", "")
    return Sample(runtime, cold_start_seconds(pod), tps, rss, node, machine)


def benchmark(kc: Kubectl, runs: int, w: Workload, log=print) -> list[Sample]:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/name": "bench-isolation"}}}
    kc("apply", "-f", "-", stdin=json.dumps(ns))
    samples: list[Sample] = []
    try:
        for i in range(runs):
            for rt in RUNTIMES:  # interleaved, so drift (node warm-up, neighbours) hits both runtimes
                s = run_one(kc, rt, i, w)
                log(f"{rt} run {i}: cold start {s.cold_start_s:.0f}s, {s.tokens_per_s:.2f} tokens/s, peak RSS {s.rss_kb / 1024:.1f} MiB")
                samples.append(s)
    finally:
        kc("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)
    return samples


def main(argv: Optional[list[str]] = None, runner: Runner = _run, which=shutil.which) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", required=True)
    ap.add_argument("--runs", type=int, default=5, help="runs per runtime (default 5)")
    ap.add_argument("--kubeconfig")
    ap.add_argument("--context")
    ap.add_argument("--image", default=DEFAULT_IMAGE)
    ap.add_argument("--model-url", default=DEFAULT_MODEL_URL)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--runc-node-pool", help="node pool for the runc Jobs (match the sandbox pool's machine type)")
    ap.add_argument("--out", type=Path, help="JSON results (default build/bench-isolation-<stack>.json)")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    try:
        kc = connect(args, runner, which)
    except Skip as s:
        print(f"SKIP: {s}")
        return 0
    w = Workload(image=args.image, model_url=args.model_url, tokens=args.tokens, runc_node_pool=args.runc_node_pool)
    try:
        samples = benchmark(kc, args.runs, w)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    summaries = summarize(samples)
    print(render_table(summaries), end="")
    out = args.out or ROOT / "build" / f"bench-isolation-{args.stack}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "stack": args.stack, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "workload": asdict(w), "samples": [asdict(s) for s in samples],
        "summary": {k: asdict(v) for k, v in summaries.items()},
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
