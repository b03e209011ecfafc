"""IBM's network-config-analyzer (nca), run over the synthetic platform cluster.

``analyse(policies, tenants)`` writes the cluster model (:mod:`tools.platform_model`) and the policies to a
temporary directory, runs nca's CLI in this process (``--connectivity <policies> --pod_list <pods> --ns_list <namespaces>
-o txt_no_fw_rules --output_endpoints pods``) and parses every
``src => dst : connections`` line into ``{(src, dst): Allowed}`` where ``src`` and ``dst`` are
``namespace/pod`` (or an IP range for ``ipBlock`` peers); a pair nca does not print has no connection.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import ipaddress
import os
import re
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components import yaml_io
from tools.platform_model import synthetic_cluster

_LINE = re.compile(r"^(?P<src>\S+) => (?P<dst>\S+) : (?P<conn>.+)$")
_CUBE = re.compile(r"\{protocols:(?P<protocols>[A-Za-z0-9, ]+?)(?:,dst_ports:(?P<ports>[0-9,\-]+))?\}")
_SUMMARY = re.compile(r"cluster has (\d+) unique endpoints, (\d+) namespaces")


class NcaError(RuntimeError):
    """nca is missing, failed, or printed something this module does not understand."""


# ---------------------------------------------------------------- connection values


@dataclass(frozen=True)
class Allowed:
    """What nca allows between two endpoints: everything, or TCP port ranges (+ other protocols)."""

    everything: bool = False
    tcp: tuple[tuple[int, int], ...] = ()
    """Inclusive TCP destination port ranges, merged and sorted."""
    other: tuple[str, ...] = ()
    """Non-TCP grants verbatim (e.g. ``UDP:53``); SR1 never creates any."""

    @staticmethod
    def parse(text: str) -> "Allowed":
        text = text.strip()
        if text == "All connections":
            return Allowed(everything=True)
        if text == "No connections":
            return Allowed()
        pos, ranges, other = 0, [], []
        for m in _CUBE.finditer(text):
            if text[pos : m.start()] not in ("", ","):
                break
            pos = m.end()
            protocols = [p.strip() for p in m.group("protocols").split(",")]  # nca prints "TCP, UDP"
            ports = m.group("ports")
            spans = [(1, 65535)] if ports is None else [_span(p) for p in ports.split(",")]
            for proto in protocols:
                if proto == "TCP":
                    ranges += spans
                else:
                    other.append(f"{proto}:{ports or '*'}")
        if pos != len(text) or not (ranges or other):
            raise NcaError(f"cannot parse nca connection set {text!r}")
        return Allowed(tcp=_merge(ranges), other=tuple(sorted(set(other))))

    def allows(self, port: int, protocol: str = "TCP") -> bool:
        if self.everything:
            return True
        if protocol != "TCP":
            return any(o.startswith(protocol + ":") for o in self.other)
        return any(lo <= port <= hi for lo, hi in self.tcp)

    def __or__(self, other: "Allowed") -> "Allowed":
        if self.everything or other.everything:
            return Allowed(everything=True)
        return Allowed(tcp=_merge(self.tcp + other.tcp), other=tuple(sorted(set(self.other + other.other))))

    def __bool__(self) -> bool:
        return self.everything or bool(self.tcp or self.other)

    def __str__(self) -> str:
        if self.everything:
            return "all"
        if not self:
            return "—"
        parts = ["all TCP" if r == (1, 65535) else (str(r[0]) if r[0] == r[1] else f"{r[0]}-{r[1]}") for r in self.tcp]
        return ", ".join(parts + list(self.other))


def _span(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    return int(lo), int(hi or lo)


def _merge(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


NOTHING = Allowed()


# ---------------------------------------------------------------- connectivity


@dataclass
class Connectivity:
    """nca's answer: ``pairs[(src, dst)]`` for every connected pair (``namespace/pod`` or IP range)."""

    pairs: dict[tuple[str, str], Allowed]
    namespaces: list[str]
    """Namespaces of the synthetic cluster, in file order."""
    pods: list[str] = field(default_factory=list)
    """``namespace/pod`` of every pod of the synthetic cluster."""
    raw: str = ""
    """nca's stdout, for debugging and the CLI's ``--raw``."""

    def between(self, src: str, dst: str) -> Allowed:
        """Allowed connections from ``src`` to ``dst``; a namespace name means all its pods (union)."""
        srcs = self._expand(src)
        dsts = self._expand(dst)
        out = NOTHING
        for s in srcs:
            for d in dsts:
                if s != d:
                    out = out | self.pairs.get((s, d), NOTHING)
        return out

    def allows(self, src: str, dst: str, port: int) -> bool:
        """Does nca allow a TCP connection from ``src`` to ``dst`` on ``port``?"""
        return self.between(src, dst).allows(port)

    def comparable(self, src: str, dst: str) -> bool:
        """False when there is no pair of distinct pods (e.g. a one-pod namespace to itself)."""
        return any(s != d for s in self._expand(src) for d in self._expand(dst))

    def from_ip(self, ip: str, dst: str) -> Allowed:
        """Allowed connections from an external IPv4 address (nca prints ranges ``a.b.c.d-e.f.g.h``)."""
        addr = ipaddress.IPv4Address(ip)
        dsts = set(self._expand(dst))
        out = NOTHING
        for (s, d), allowed in self.pairs.items():
            lo, sep, hi = s.partition("-")
            if not sep or d not in dsts:
                continue
            try:
                inside = ipaddress.IPv4Address(lo) <= addr <= ipaddress.IPv4Address(hi)
            except ValueError:
                continue
            if inside:
                out = out | allowed
        return out

    def to_ip(self, src: str, ip: str) -> Allowed:
        """Allowed connections from ``src`` (pod or namespace) to an IPv4 address (egress analysis).

        nca prints IP destinations as ranges ``a.b.c.d-e.f.g.h`` or single addresses.
        """
        addr = ipaddress.IPv4Address(ip)
        srcs = set(self._expand(src))
        out = NOTHING
        for (s, d), allowed in self.pairs.items():
            if s not in srcs or "/" in d:
                continue
            lo, _, hi = d.partition("-")
            try:
                inside = ipaddress.IPv4Address(lo) <= addr <= ipaddress.IPv4Address(hi or lo)
            except ValueError:
                continue
            if inside:
                out = out | allowed
        return out

    def _expand(self, endpoint: str) -> list[str]:
        if "/" in endpoint:
            if endpoint not in self.pods:
                raise KeyError(f"{endpoint!r} is not a pod of the synthetic cluster")
            return [endpoint]
        if endpoint in self.namespaces:
            return [p for p in self.pods if p.split("/", 1)[0] == endpoint]
        return [endpoint]  # an IP range as nca prints it


def parse_output(text: str) -> dict[tuple[str, str], Allowed]:
    """Parse ``nca -o txt_no_fw_rules`` output into ``{(src, dst): Allowed}``."""
    pairs: dict[tuple[str, str], Allowed] = {}
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        key = (m.group("src"), m.group("dst"))
        pairs[key] = pairs.get(key, NOTHING) | Allowed.parse(m.group("conn"))
    return pairs


def nca_available() -> bool:
    """Whether network-config-analyzer (``requirements.txt``) is importable in this interpreter."""
    return importlib.util.find_spec("nca") is not None


def nca_args(policies: Path, pods: Path, namespaces: Path) -> list[str]:
    """The nca command line (without the program name) for a connectivity report per pod."""
    return [
        "--connectivity", str(policies),
        "--pod_list", str(pods),
        "--ns_list", str(namespaces),
        "--output_format", "txt_no_fw_rules",
        "--output_endpoints", "pods",
    ]


def run_nca(args: list[str]) -> tuple[int, str, str]:
    """Run nca's CLI in this process: (exit code, stdout, stderr).

    In-process because a second interpreter costs more than the analysis itself. nca's modules keep
    their own reference to ``sys.stderr`` for warnings, so stderr is captured at the file descriptor.
    """
    from nca.nca_cli import nca_main

    out = io.StringIO()
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as err_file:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(err_file.fileno(), 2)
        try:
            with contextlib.redirect_stdout(out):
                try:
                    rc = nca_main(args)
                except SystemExit as e:  # argparse errors
                    rc = e.code if isinstance(e.code, int) else 2
        finally:
            sys.stderr.flush()
            if sys.__stderr__ is not None:
                sys.__stderr__.flush()
            os.dup2(saved, 2)
            os.close(saved)
        err_file.seek(0)
        err = err_file.read()
    return int(rc or 0), out.getvalue(), err


def analyse(policies: list[dict[str, Any]], tenants: Iterable[str] = ()) -> Connectivity:
    """Run nca over the synthetic cluster (+ ``tenants``) with ``policies``; raise NcaError on any failure."""
    if not nca_available():
        raise NcaError(
            "network-config-analyzer (package `nca`, in requirements.txt) is not installed in "
            f"{sys.executable}: run `pip install -r requirements.txt`"
        )
    namespaces, pods = synthetic_cluster(tenants)
    with tempfile.TemporaryDirectory(prefix="sr1-nca-") as tmp:
        d = Path(tmp)
        (d / "namespaces.yaml").write_text(yaml_io.dump({"apiVersion": "v1", "kind": "NamespaceList", "items": namespaces}))
        (d / "pods.yaml").write_text(yaml_io.dump({"apiVersion": "v1", "kind": "PodList", "items": pods}))
        (d / "policies.yaml").write_text(yaml_io.dump_all([copy.deepcopy(p) for p in policies]) if policies else "")
        args = nca_args(d / "policies.yaml", d / "pods.yaml", d / "namespaces.yaml")
        try:
            rc, stdout, stderr = run_nca(args)
        except Exception as e:  # noqa: BLE001 - any crash inside nca is reported as nca's failure
            raise NcaError(f"nca crashed: nca {' '.join(args)}: {e!r}") from e
    if rc != 0:
        raise NcaError(f"nca failed (exit {rc}): nca {' '.join(args)}\n{stdout[-2000:]}\n{stderr[-2000:]}")
    summary = _SUMMARY.search(stdout)
    if not summary or int(summary.group(2)) != len(namespaces):
        raise NcaError(
            f"nca did not load the synthetic cluster ({len(namespaces)} namespaces expected): "
            f"{stdout[:500]}\n{stderr[-1000:]}"
        )
    pod_ids = [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods]
    return Connectivity(
        pairs=parse_output(stdout),
        namespaces=[ns["metadata"]["name"] for ns in namespaces],
        pods=pod_ids,
        raw=stdout,
    )


