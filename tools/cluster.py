"""A local Kubernetes control plane for end-to-end tests: etcd, kube-apiserver and kube-controller-manager on
127.0.0.1, built by ``make kube-engines`` from the modules pinned in engines/kubernetes/go.mod. No kubelet:
pods are admitted (or refused) by the real API server but never run.

    python -m tools.cluster up|down|status [--dir DIR] [--kube-apiserver-port N ...] [--timeout S]

``up`` writes certificates, the admin kubeconfig (``DIR/kubeconfig``), logs (``DIR/logs``), etcd's data and
``DIR/state.json`` (ports, PIDs); ``down`` stops every process recorded there and removes DIR.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
GOMOD = REPO / "engines" / "kubernetes" / "go.mod"
HOST = "127.0.0.1"
STATE = "state.json"
# Started in this order, stopped in the reverse one.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")
# etcd's peer port is listened on even by a single member, so it needs a free port too.
PORTS = ("etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager")
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # the first address of SERVICE_CIDR: the `kubernetes` Service
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
# kube-apiserver 1.35's default-on plugins, listed so a default changing upstream shows up here, plus
# NodeRestriction, which GKE enables too (kubelets authenticate as nodes there; inert here without nodes).
# PodSecurity, ValidatingAdmissionPolicy and the two webhook plugins are what the platform's guardrails use.
ADMISSION_PLUGINS = (
    "NamespaceLifecycle", "LimitRanger", "ServiceAccount", "NodeRestriction", "TaintNodesByCondition",
    "PodSecurity", "Priority", "DefaultTolerationSeconds", "DefaultStorageClass", "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize", "RuntimeClass", "CertificateApproval", "CertificateSigning",
    "ClusterTrustBundleAttest", "CertificateSubjectRestriction", "DefaultIngressClass", "PodTopologyLabels",
    "MutatingAdmissionPolicy", "MutatingAdmissionWebhook", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook", "ResourceQuota",
)
POLL = 0.05


class ClusterError(Exception):
    """A failure reported as one line on stderr (exit 1)."""


@dataclass
class Cluster:
    """Where one cluster lives and what it was started with."""

    dir: Path
    engines: Path
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, list[int]] = field(default_factory=dict)  # component -> [pid, start time from /proc]
    stage: str = "certificates"  # what `up` is doing: named in the state file when it fails

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    def log(self, component: str) -> Path:
        return self.dir / "logs" / f"{component}.log"

    def url(self, component: str, path: str) -> str:
        return f"https://{HOST}:{self.ports[component]}{path}"


# --- locations -------------------------------------------------------------------------------------------


def kube_version(gomod: Path = GOMOD) -> str:
    """The k8s.io/kubernetes version required by go.mod: the one place the version is written."""
    match = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v\S+)", gomod.read_text(), re.MULTILINE)
    if not match:
        raise ClusterError(f"no k8s.io/kubernetes requirement in {gomod}")
    return match.group(1)


def engines_dir(version: str) -> Path:
    """$ENGINES_CACHE/kubernetes-<version>, with the Makefile's default for ENGINES_CACHE."""
    cache = os.environ.get("ENGINES_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llm-platform" / "engines")
    return Path(cache) / f"kubernetes-{version}"


def default_dir() -> Path:
    return Path(os.environ.get("LLM_PLATFORM_CLUSTER_DIR") or REPO / "build" / "cluster")


# --- state and processes ---------------------------------------------------------------------------------


def load(directory: Path, engines: Path) -> Optional[Cluster]:
    """The cluster recorded in directory, or None when there is none."""
    try:
        data = json.loads((directory / STATE).read_text())
    except FileNotFoundError:
        return None
    return Cluster(directory, engines, ports=data.get("ports", {}), pids=data.get("pids", {}))


def save(cluster: Cluster, **extra: str) -> None:
    # Rewritten after every start, so a `down` after an interrupted `up` still finds every process.
    data = {"ports": cluster.ports, "pids": cluster.pids, **extra}
    tmp = cluster.dir / f"{STATE}.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(cluster.dir / STATE)


def start_time(pid: int) -> Optional[int]:
    """The process's start time (clock ticks since boot), or None when it is gone or a zombie.

    Recorded with the PID so `down` never signals an unrelated process that reused the PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may contain spaces and parentheses
    return None if fields[0] in ("Z", "X") else int(fields[19])


def running(cluster: Cluster) -> dict[str, int]:
    """component -> PID for each recorded process that is still the one we started."""
    return {name: pid for name, (pid, started) in cluster.pids.items() if start_time(pid) == started}


def stop_all(cluster: Cluster) -> int:
    """Stop the recorded processes one by one in reverse start order (etcd last: the API server's store
    outlives it); the number stopped."""
    alive = running(cluster)
    for name in reversed(COMPONENTS):
        if name in alive:
            stop([alive[name]])
    return len(alive)


def stop(pids: Sequence[int], timeout: float = 10.0) -> None:
    """SIGTERM each process, SIGKILL whatever still runs after timeout, and wait until all are gone."""
    expected = {pid: start_time(pid) for pid in pids}
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        alive = [pid for pid, started in expected.items() if started is not None and start_time(pid) == started]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            time.sleep(POLL)
            alive = [pid for pid in alive if start_time(pid) == expected[pid]]
        if not alive:
            break
    else:
        raise ClusterError(f"processes {alive} survived SIGKILL")
    # Wait for the exited processes to be reaped, so that nothing, not even a zombie, is listed once this
    # returns: ours (a failed `up`) we reap here; those a finished `up` left behind are init's to reap.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        for pid in expected:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        if not any(Path(f"/proc/{pid}").exists() for pid in expected):
            break
        time.sleep(POLL)


# --- ports -----------------------------------------------------------------------------------------------


def choose_ports(requested: dict[str, int]) -> dict[str, int]:
    """A port per PORTS entry: the requested one after checking it is free, else one the kernel picks."""
    given = [port for port in requested.values() if port]
    if len(given) != len(set(given)):
        raise ClusterError(f"the same port is requested twice: {requested}")
    ports: dict[str, int] = {}
    with contextlib.ExitStack() as held:  # hold every probe socket until all are chosen: no duplicates
        for name in PORTS:
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            # As Go's listeners: a port left in TIME_WAIT is free, one another process listens on is not.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, requested.get(name, 0)))
            except OSError as err:
                raise ClusterError(f"port {HOST}:{requested.get(name)} for {name} is already in use ({err.strerror})") from None
            ports[name] = sock.getsockname()[1]
    return ports


# --- certificates ----------------------------------------------------------------------------------------


def openssl(*args: str) -> None:
    try:
        subprocess.run(["openssl", *args], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise ClusterError("openssl not found: it makes the cluster's certificates (apt-get install openssl)") from None
    except subprocess.CalledProcessError as err:
        raise ClusterError(f"openssl {args[0]} failed: {err.stderr.strip().splitlines()[-1:]}") from None


def certificate(pki: Path, name: str, subject: dict[str, str], extensions: str, ca: bool = False) -> None:
    """pki/<name>.key (EC P-256, fast to make) and pki/<name>.crt, signed by pki/ca.* unless ca."""
    dn = "\n".join(f"{key} = {value}" for key, value in subject.items())
    # Our own config, not the system openssl.cnf, so the extensions are exactly these.
    (pki / f"{name}.cnf").write_text(f"[req]\nprompt = no\ndistinguished_name = dn\n[dn]\n{dn}\n[ext]\n{extensions}\n")
    key, cnf, crt = (str(pki / f"{name}.{ext}") for ext in ("key", "cnf", "crt"))
    # One call per certificate (`req -x509 -CA`, OpenSSL 3): start-up time is mostly these processes.
    signer = () if ca else ("-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"))
    openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-config", cnf, "-extensions", "ext", *signer, "-days", "30", "-out", crt)


def make_pki(pki: Path) -> None:
    pki.mkdir(mode=0o700)
    leaf = "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature"
    client = f"{leaf}\nextendedKeyUsage = clientAuth"
    certificate(pki, "ca", {"CN": "llm-platform local cluster CA"},
                "basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign,digitalSignature", ca=True)
    # One serving certificate for the three servers; clientAuth too, because etcd's peer TLS uses it both ways.
    names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local"]
    san = ",".join([f"IP:{HOST}", f"IP:{SERVICE_IP}", *(f"DNS:{name}" for name in names)])
    certificate(pki, "serving", {"CN": "kube-apiserver"},
                f"{leaf}\nextendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = {san}")
    certificate(pki, "etcd-client", {"CN": "kube-apiserver-etcd-client"}, client)
    # system:masters: the admin bypasses RBAC, as the GKE cluster's creator does with cluster-admin.
    certificate(pki, "admin", {"O": "system:masters", "CN": "llm-platform-admin"}, client)
    certificate(pki, "controller-manager", {"CN": "system:kube-controller-manager"}, client)
    certificate(pki, "front-proxy-client", {"CN": "front-proxy-client"}, client)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(pki / "sa.key"))
    openssl("pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def write_kubeconfig(cluster: Cluster, path: Path, user: str) -> None:
    """A kubeconfig with the certificates inline (JSON is YAML), so it stays valid wherever it is copied."""
    def data(name: str) -> str:
        return base64.b64encode((cluster.pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "local",
        "clusters": [{"name": "local", "cluster": {"server": cluster.url("kube-apiserver", ""),
                                                   "certificate-authority-data": data("ca.crt")}}],
        "users": [{"name": user, "user": {"client-certificate-data": data(f"{user}.crt"),
                                          "client-key-data": data(f"{user}.key")}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


# --- command lines ---------------------------------------------------------------------------------------


def command(cluster: Cluster, component: str) -> list[str]:
    pki, ports = cluster.pki, cluster.ports
    binary = str(cluster.engines / component)
    if component == "etcd":
        client, peer = f"https://{HOST}:{ports['etcd']}", f"https://{HOST}:{ports['etcd-peer']}"
        return [
            binary, "--name=local", f"--data-dir={cluster.dir / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}", f"--initial-cluster=local={peer}",
            # Client certificates on both ports: nothing else on this machine reads or writes the store.
            f"--cert-file={pki / 'serving.crt'}", f"--key-file={pki / 'serving.key'}",
            f"--trusted-ca-file={pki / 'ca.crt'}", "--client-cert-auth",
            f"--peer-cert-file={pki / 'serving.crt'}", f"--peer-key-file={pki / 'serving.key'}",
            f"--peer-trusted-ca-file={pki / 'ca.crt'}", "--peer-client-cert-auth",
            # A throwaway store: durability across a power cut is worth nothing here, fsync latency is not.
            "--unsafe-no-fsync",
        ]
    if component == "kube-apiserver":
        return [
            binary, f"--bind-address={HOST}", f"--secure-port={ports['kube-apiserver']}",
            # No endpoint reconciler: the `kubernetes` Service would point at a loopback address, which
            # EndpointSlice validation refuses; nothing in a pod-less cluster dials it.
            f"--advertise-address={HOST}", "--endpoint-reconciler-type=none",
            f"--etcd-servers=https://{HOST}:{ports['etcd']}", f"--etcd-cafile={pki / 'ca.crt'}",
            f"--etcd-certfile={pki / 'etcd-client.crt'}", f"--etcd-keyfile={pki / 'etcd-client.key'}",
            f"--tls-cert-file={pki / 'serving.crt'}", f"--tls-private-key-file={pki / 'serving.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            # The aggregation layer's front proxy (as on GKE): the API server authenticates to aggregated API
            # servers with this certificate, and delegating servers (the controller manager's own port, later
            # extension API servers) trust X-Remote-* headers only from it.
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            f"--requestheader-client-ca-file={pki / 'ca.crt'}", "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-uid-headers=X-Remote-Uid", "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--authorization-mode=Node,RBAC", f"--enable-admission-plugins={','.join(ADMISSION_PLUGINS)}",
            # GKE Standard allows privileged containers; Pod Security, not this flag, decides per namespace.
            "--allow-privileged=true",
            f"--service-account-issuer={SA_ISSUER}", f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
        ]
    if component == "kube-controller-manager":
        kubeconfig = str(cluster.dir / "controller-manager.kubeconfig")
        return [
            binary, f"--bind-address={HOST}", f"--secure-port={ports['kube-controller-manager']}",
            f"--tls-cert-file={pki / 'serving.crt'}", f"--tls-private-key-file={pki / 'serving.key'}",
            f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            # Each controller acts as its own service account (system:serviceaccount:kube-system:job-controller,
            # ...), as on GKE, so RBAC and admission see the identities they see there.
            "--use-service-account-credentials=true",
            # Every default controller (namespace deletion, garbage collector, job, cronjob, replicaset,
            # deployment, statefulset, serviceaccount and its token controller, ...); node ones idle without nodes.
            "--controllers=*",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--leader-elect=false",  # one instance, and no stale lease to wait out
        ]
    raise ValueError(component)


# --- readiness -------------------------------------------------------------------------------------------


def tls_opener(cluster: Cluster, user: str) -> urllib.request.OpenerDirector:
    context = ssl.create_default_context(cafile=str(cluster.pki / "ca.crt"))
    context.load_cert_chain(str(cluster.pki / f"{user}.crt"), str(cluster.pki / f"{user}.key"))
    # No proxy: every address is loopback, and a proxy from the environment would not reach it.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))


def answers(opener: urllib.request.OpenerDirector, url: str) -> bool:
    try:
        with opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def wait_for(cluster: Cluster, component: str, process: subprocess.Popen[bytes], what: str,
             checks: Sequence[tuple[urllib.request.OpenerDirector, str]], deadline: float) -> None:
    """Wait until every URL answers 200; fail on the component's exit or at the deadline."""
    log = cluster.log(component)
    while not all(answers(opener, url) for opener, url in checks):
        code = process.poll()
        if code is not None:
            raise ClusterError(f"{component} (port {HOST}:{cluster.ports[component]}) exited with code {code} "
                               f"during start-up; log {log}: {last_line(log)}")
        if time.monotonic() > deadline:
            raise ClusterError(f"{component} (port {HOST}:{cluster.ports[component]}) not {what} in time; log {log}")
        time.sleep(POLL)


# --- commands --------------------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    # Loopback only: a proxy from the environment would capture the API server's webhook calls.
    return {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}


def launch(cluster: Cluster, component: str) -> subprocess.Popen[bytes]:
    cluster.stage = component
    argv = command(cluster, component)
    with cluster.log(component).open("ab") as log:
        try:
            # Own session: a Ctrl-C meant for `up` does not reach the cluster, which outlives this command.
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       env=child_env(), start_new_session=True)
        except OSError as err:
            raise ClusterError(f"{component}: cannot start {argv[0]} ({err.strerror}); log {cluster.log(component)}") from None
    cluster.pids[component] = [process.pid, start_time(process.pid) or 0]
    save(cluster)
    return process


def start(cluster: Cluster, timeout: float) -> None:
    """Certificates, kubeconfigs, then each component in turn, each ready before the next starts."""
    make_pki(cluster.pki)
    (cluster.dir / "logs").mkdir()
    write_kubeconfig(cluster, cluster.kubeconfig, "admin")
    write_kubeconfig(cluster, cluster.dir / "controller-manager.kubeconfig", "controller-manager")
    admin = tls_opener(cluster, "admin")
    api = cluster.url("kube-apiserver", "")
    deadline = time.monotonic() + timeout
    ready = {
        "etcd": ("healthy", [(tls_opener(cluster, "etcd-client"), cluster.url("etcd", "/health"))]),
        "kube-apiserver": ("ready", [(admin, f"{api}/readyz")]),
        # Controllers working: the namespace kube-system and the `default` ServiceAccount that the
        # serviceaccount controller creates in each namespace.
        "kube-controller-manager": ("working", [
            (admin, cluster.url("kube-controller-manager", "/healthz")),
            (admin, f"{api}/api/v1/namespaces/kube-system"),
            (admin, f"{api}/api/v1/namespaces/default/serviceaccounts/default"),
        ]),
    }
    for component in COMPONENTS:
        what, checks = ready[component]
        wait_for(cluster, component, launch(cluster, component), what, checks, deadline)


def clean_failed(cluster: Cluster, failed: str) -> None:
    """Stop what started; keep only logs/ and a state file saying what failed (`down` removes both)."""
    stop_all(cluster)
    cluster.pids = {}
    for path in cluster.dir.iterdir():
        if path.is_dir() and path.name != "logs":
            shutil.rmtree(path)
        elif path.is_file():
            path.unlink()
    save(cluster, failed=failed)


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """A SIGTERM during `up` unwinds like Ctrl-C, so the cleanup runs."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def up(directory: Path, engines: Path, requested: dict[str, int], timeout: float) -> str:
    existing = load(directory, engines)
    if existing and running(existing):
        if set(running(existing)) == set(COMPONENTS):
            return f"already up: kubeconfig {existing.kubeconfig}"
        raise ClusterError(f"cluster in {directory} is partly running ({', '.join(running(existing))}): "
                           f"run `python -m tools.cluster down` first")
    if existing is None and directory.exists() and any(directory.iterdir()):
        raise ClusterError(f"{directory} is not empty and holds no cluster: refusing to use (and later remove) it")
    missing = [name for name in COMPONENTS if not os.access(engines / name, os.X_OK)]
    if missing:
        raise ClusterError(f"{', '.join(missing)} not found in {engines}: run `make kube-engines`")
    ports = choose_ports(requested)  # before anything is created: a taken port leaves nothing behind
    shutil.rmtree(directory, ignore_errors=True)  # a stopped or failed cluster of ours
    directory.mkdir(mode=0o700, parents=True)
    cluster = Cluster(directory.resolve(), engines, ports=ports)
    save(cluster)
    began = time.monotonic()
    try:
        with sigterm_as_exit():
            start(cluster, timeout)
    except BaseException:
        clean_failed(cluster, cluster.stage)
        raise
    return (f"up in {time.monotonic() - began:.1f} s ({cluster.url('kube-apiserver', '')}): "
            f"kubeconfig {cluster.kubeconfig}")


def down(directory: Path, engines: Path) -> str:
    cluster = load(directory, engines)
    if cluster is None:
        if directory.exists() and any(directory.iterdir()):
            raise ClusterError(f"{directory} holds no cluster state: leaving it alone")
        shutil.rmtree(directory, ignore_errors=True)
        return f"not up (no cluster in {directory})"
    stopped = stop_all(cluster)
    shutil.rmtree(directory)
    return f"down: stopped {stopped} process(es), removed {directory}"


def status(directory: Path, engines: Path) -> tuple[bool, str]:
    cluster = load(directory, engines)
    if cluster is None:
        return False, f"down (no cluster in {directory})"
    alive = running(cluster)
    dead = [name for name in COMPONENTS if name not in alive]
    if not dead and answers(tls_opener(cluster, "admin"), cluster.url("kube-apiserver", "/readyz")):
        pids = ", ".join(f"{name} {pid}" for name, pid in alive.items())
        return True, f"up: {cluster.url('kube-apiserver', '')} ({pids}); kubeconfig {cluster.kubeconfig}"
    if not alive:
        return False, f"down (state and logs in {directory}; `down` removes them)"
    return False, f"degraded: not running {', '.join(dead) or 'none'}, API server not ready; logs in {directory / 'logs'}"


# --- command line ----------------------------------------------------------------------------------------


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return value


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m tools.cluster", description=__doc__.split("\n\n")[0])
    parse.add_argument("action", choices=("up", "down", "status"))
    parse.add_argument("--dir", type=Path, default=None,
                       help="cluster directory (default $LLM_PLATFORM_CLUSTER_DIR or build/cluster)")
    for name in PORTS:
        parse.add_argument(f"--{name}-port", type=port, default=0, help=f"{name} port on {HOST} (default: a free one)")
    parse.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole start-up (default 120)")
    return parse


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    directory = (args.dir or default_dir()).absolute()
    requested = {name: getattr(args, f"{name.replace('-', '_')}_port") for name in PORTS}
    try:
        engines = engines_dir(kube_version())
        if args.action == "status":
            ok, message = status(directory, engines)
            print(message)
            return 0 if ok else 1
        print(up(directory, engines, requested, args.timeout) if args.action == "up" else down(directory, engines))
    except ClusterError as err:
        print(f"cluster: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cluster: interrupted (whatever had started is stopped)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
