"""tools/cluster.py without the engines: command line, the version's one source, and that a taken port or a
failed start leaves no process and no cluster behind (stand-in binaries are shell scripts)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from tools import cluster

VERSION = cluster.kube_version()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The certificates `up` makes, made once: each openssl call is a process start."""
    directory = tmp_path_factory.mktemp("pki") / "pki"
    cluster.make_pki(directory)
    return directory


@pytest.fixture
def engines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pki: Path) -> Path:
    """$ENGINES_CACHE/kubernetes-<version> holding a stand-in for each binary that only records that it ran."""
    monkeypatch.setenv("ENGINES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cluster, "make_pki", lambda target: shutil.copytree(pki, target))
    directory = tmp_path / "cache" / f"kubernetes-{VERSION}"
    directory.mkdir(parents=True)
    for name in cluster.COMPONENTS:
        fake(directory, name, f'echo $$ >> "{tmp_path}/ran"; exit 0')
    return directory


def fake(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def test_parser_defaults_and_ports() -> None:
    args = cluster.parser().parse_args(["up"])
    assert (args.action, args.dir, args.kube_apiserver_port, args.etcd_peer_port, args.timeout) == ("up", None, 0, 0, 120.0)
    args = cluster.parser().parse_args(["down", "--dir", "/tmp/x", "--kube-apiserver-port", "6443"])
    assert (args.action, args.dir, args.kube_apiserver_port) == ("down", Path("/tmp/x"), 6443)
    for bad in (["start"], ["up", "--etcd-port", "70000"], ["up", "--etcd-port", "x"]):
        with pytest.raises(SystemExit):
            cluster.parser().parse_args(bad)


def test_default_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LLM_PLATFORM_CLUSTER_DIR", raising=False)
    assert cluster.default_dir() == cluster.REPO / "build" / "cluster"
    monkeypatch.setenv("LLM_PLATFORM_CLUSTER_DIR", str(tmp_path))
    assert cluster.default_dir() == tmp_path


def test_version_comes_from_gomod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gomod = tmp_path / "go.mod"
    gomod.write_text("module m\n\nrequire (\n\tgo.etcd.io/etcd/server/v3 v3.6.5 // indirect\n"
                     "\tk8s.io/kubernetes v1.35.4 // indirect\n)\n\nreplace k8s.io/api => k8s.io/api v0.35.4\n")
    assert cluster.kube_version(gomod) == "v1.35.4"
    gomod.write_text("module m\n\nrequire k8s.io/kubernetes v1.36.1\n")
    assert cluster.kube_version(gomod) == "v1.36.1"
    gomod.write_text("module m\n\nreplace k8s.io/kubernetes => ../kubernetes\n")
    with pytest.raises(cluster.ClusterError, match="no k8s.io/kubernetes requirement"):
        cluster.kube_version(gomod)
    # The real go.mod pins a release, and the binaries are looked up under it.
    assert re.fullmatch(r"v1\.\d+\.\d+", VERSION)
    assert f"\tk8s.io/kubernetes {VERSION}" in cluster.GOMOD.read_text()
    monkeypatch.setenv("ENGINES_CACHE", "/cache")
    assert cluster.engines_dir(VERSION) == Path(f"/cache/kubernetes-{VERSION}")


def test_taken_port_is_one_line_and_leaves_nothing(engines: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cluster.main(["up", "--dir", str(tmp_path / "c"), "--kube-apiserver-port", str(port)])
    err = capsys.readouterr().err
    assert code == 1
    assert err == f"cluster: port 127.0.0.1:{port} for kube-apiserver is already in use (Address already in use)\n"
    assert not (tmp_path / "c").exists()
    assert not (tmp_path / "ran").exists()  # no component was started


def test_component_exiting_is_reported_and_cleaned(engines: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake(engines, "etcd", 'echo "listen tcp 127.0.0.1:1: bind: address already in use" >&2; exit 1')
    directory = tmp_path / "c"
    assert cluster.main(["up", "--dir", str(directory)]) == 1
    err = capsys.readouterr().err.splitlines()
    log = directory / "logs" / "etcd.log"
    assert len(err) == 1
    assert re.fullmatch(rf"cluster: etcd \(port 127\.0\.0\.1:\d+\) exited with code 1 during start-up; "
                        rf"log {re.escape(str(log))}: listen tcp 127.0.0.1:1: bind: address already in use", err[0])
    assert sorted(path.name for path in directory.iterdir()) == ["logs", "state.json"]
    assert json.loads((directory / "state.json").read_text())["failed"] == "etcd"
    assert not (tmp_path / "ran").exists()  # the API server was never started


def test_hung_start_is_stopped_and_down_removes_everything(engines: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    fake(engines, "etcd", f'echo $$ > "{tmp_path}/etcd.pid"; exec sleep 30')
    directory = tmp_path / "c"
    assert cluster.main(["up", "--dir", str(directory), "--timeout", "0.1"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and re.fullmatch(r"cluster: etcd \(port 127\.0\.0\.1:\d+\) not healthy in time; log "
                                          + re.escape(str(directory / "logs" / "etcd.log")), err[0])
    assert not Path(f"/proc/{int((tmp_path / 'etcd.pid').read_text())}").exists()  # stopped and reaped
    assert cluster.main(["down", "--dir", str(directory)]) == 0
    assert not directory.exists()


def test_up_when_up_then_down_stops_all(engines: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "c"
    directory.mkdir()
    sleepers = {name: subprocess.Popen(["sleep", "30"]) for name in cluster.COMPONENTS}
    try:
        state = cluster.Cluster(directory, engines, ports={name: 1 for name in cluster.PORTS},
                                pids={name: [p.pid, cluster.start_time(p.pid) or 0] for name, p in sleepers.items()})
        cluster.save(state)
        assert cluster.main(["up", "--dir", str(directory)]) == 0
        assert capsys.readouterr().out == f"already up: kubeconfig {directory / 'kubeconfig'}\n"
        assert cluster.main(["down", "--dir", str(directory)]) == 0
        assert capsys.readouterr().out == f"down: stopped 3 process(es), removed {directory}\n"
        assert not directory.exists()
        assert not any(Path(f"/proc/{p.pid}").exists() for p in sleepers.values())  # stopped and reaped
    finally:
        for p in sleepers.values():
            p.kill()
            p.wait()
    assert not (tmp_path / "ran").exists()


def test_foreign_directory_is_left_alone(engines: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mine.txt").write_text("keep")
    for action in ("up", "down"):
        assert cluster.main([action, "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.count("\n") == 2
    assert (tmp_path / "mine.txt").read_text() == "keep"
    assert cluster.main(["status", "--dir", str(tmp_path / "none")]) == 1
    assert capsys.readouterr().out == f"down (no cluster in {tmp_path / 'none'})\n"


def test_children_get_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("no_proxy", "x")
    env = cluster.child_env()
    assert "HTTPS_PROXY" not in env and "no_proxy" not in env and env["PATH"] == os.environ["PATH"]


def test_certificates_authenticate_both_ways(pki: Path) -> None:
    """The serving certificate is valid for 127.0.0.1 and the admin's client certificate is accepted, both under
    the generated CA: a TLS handshake in-process, as kube-apiserver and the tool's own client do it."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki / "serving.crt", pki / "serving.key")
    server.load_verify_locations(pki / "ca.crt")
    server.verify_mode = ssl.CERT_REQUIRED
    seen: list[object] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def accept() -> None:
            conn, _ = listener.accept()
            with server.wrap_socket(conn, server_side=True) as tls:
                seen.append(tls.getpeercert()["subject"])
        thread = threading.Thread(target=accept)
        thread.start()
        client = ssl.create_default_context(cafile=pki / "ca.crt")
        client.load_cert_chain(pki / "admin.crt", pki / "admin.key")
        with socket.create_connection(listener.getsockname()) as raw, client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.getpeercert()["subjectAltName"][:2] == (("IP Address", "127.0.0.1"), ("IP Address", "10.96.0.1"))
        thread.join(timeout=2)
    assert seen == [((("organizationName", "system:masters"),), (("commonName", "llm-platform-admin"),))]
    assert {path.name for path in pki.glob("*.key")} == {"ca.key", "serving.key", "etcd-client.key", "admin.key",
                                                         "controller-manager.key", "front-proxy-client.key", "sa.key"}
