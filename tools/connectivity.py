"""Connectivity of the SR1 NetworkPolicies, computed by IBM's network-config-analyzer (nca).

Library and CLI. Given NetworkPolicy manifests and tenant names it

1. writes the synthetic cluster (``data/netpol-cluster/*.yaml`` plus one Namespace and one Pod
   per configured tenant) and the policies to a temporary directory,
2. runs ``nca --connectivity <policies> --pod_list <pods> --ns_list <namespaces>
   -o txt_no_fw_rules --output_endpoints pods`` (the ``nca`` next to ``sys.executable``),
3. parses every ``src => dst : connections`` line into ``{(src, dst): Allowed}`` where ``src`` and
   ``dst`` are ``namespace/pod`` (or an IP range for ``ipBlock`` peers); a pair that nca does
   not print has no connection at all,
4. renders the namespace matrix (rows: source namespaces; columns: the protected namespaces, then litellm)
   as markdown and as a hand-written, byte-deterministic SVG.

``write_matrix(policies, tenants, out_dir)`` is what the offline render (``make synth``) calls.

CLI::

    python tools/connectivity.py [--policies FILE.yaml] [--tenant NAME ...] [--out DIR] [--raw]

Without ``--policies`` it analyses ``build_policies(NetworkPolicyConfig())`` (the defaults).
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional
from xml.sax.saxutils import escape

import yaml

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_DIR = ROOT / "data" / "netpol-cluster"
NAME_LABEL = "kubernetes.io/metadata.name"
TENANT_LABEL = "llm-platform/tenant"

COLUMNS = ("serving", "inference", "kserve", "llm-d", "litellm")
"""Default destination namespaces of the matrix (``write_matrix`` uses the policies' namespaces + litellm)."""
PLATFORM_ROWS = (
    "litellm", "inference", "serving", "kserve", "llm-d", "agentgateway-system", "monitoring", "gmp-system",
    "kube-system", "default",
)
"""Source namespaces shown first, in this order."""
TENANT_CAP = 6
"""Configured tenants analysed and drawn individually; the rest are summarised as "+N more"."""

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


def _load_items(path: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return list(doc["items"])


def fixture_tenants() -> list[str]:
    """Tenant namespaces that are always part of the synthetic cluster (team-a, team-b, team-evil)."""
    return [
        ns["metadata"]["name"]
        for ns in _load_items(CLUSTER_DIR / "namespaces.yaml")
        if ns["metadata"].get("labels", {}).get(TENANT_LABEL) == "true"
    ]


def synthetic_cluster(tenants: Iterable[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(namespaces, pods): the fixture files plus one Namespace and one Pod per extra tenant."""
    namespaces = _load_items(CLUSTER_DIR / "namespaces.yaml")
    pods = _load_items(CLUSTER_DIR / "pods.yaml")
    names = [ns["metadata"]["name"] for ns in namespaces]
    for ns in namespaces:
        # The API server sets this label to the name and rejects changes; a fixture that
        # "forges" it would prove something that cannot happen.
        if ns["metadata"].get("labels", {}).get(NAME_LABEL) != ns["metadata"]["name"]:
            raise NcaError(f"fixture namespace {ns['metadata']['name']!r}: {NAME_LABEL} must equal its name")
    for t in tenants:
        if t in names:
            continue
        names.append(t)
        namespaces.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": t, "labels": {NAME_LABEL: t, TENANT_LABEL: "true"}},
            }
        )
        pods.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "app-0", "namespace": t, "labels": {"app": "tenant-app"}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "tenant/app", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}
                    ]
                },
            }
        )
    return namespaces, pods


def nca_executable() -> Optional[Path]:
    """The ``nca`` installed with this Python (``requirements.txt``), else one on PATH."""
    here = Path(sys.executable).parent / "nca"
    if here.is_file():
        return here
    found = shutil.which("nca")
    return Path(found) if found else None


def nca_command(policies: Path, pods: Path, namespaces: Path, nca: Path) -> list[str]:
    return [
        str(nca),
        "--connectivity", str(policies),
        "--pod_list", str(pods),
        "--ns_list", str(namespaces),
        "--output_format", "txt_no_fw_rules",
        "--output_endpoints", "pods",
    ]


def analyse(policies: list[dict[str, Any]], tenants: Iterable[str] = ()) -> Connectivity:
    """Run nca over the synthetic cluster (+ ``tenants``) with ``policies``; raise NcaError on any failure."""
    nca = nca_executable()
    if nca is None:
        raise NcaError(
            "the `nca` executable (network-config-analyzer, in requirements.txt) was not found next to "
            f"{sys.executable} nor on PATH: run `pip install -r requirements.txt`"
        )
    namespaces, pods = synthetic_cluster(tenants)
    with tempfile.TemporaryDirectory(prefix="sr1-nca-") as tmp:
        d = Path(tmp)
        (d / "namespaces.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "NamespaceList", "items": namespaces}))
        (d / "pods.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "PodList", "items": pods}))
        (d / "policies.yaml").write_text(yaml.safe_dump_all([copy.deepcopy(p) for p in policies]) if policies else "")
        cmd = nca_command(d / "policies.yaml", d / "pods.yaml", d / "namespaces.yaml", nca)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=d)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise NcaError(f"could not run {' '.join(cmd)}: {e}") from e
    if proc.returncode != 0:
        raise NcaError(
            f"nca failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    summary = _SUMMARY.search(proc.stdout)
    if not summary or int(summary.group(2)) != len(namespaces):
        raise NcaError(
            f"nca did not load the synthetic cluster ({len(namespaces)} namespaces expected): "
            f"{proc.stdout[:500]}\n{proc.stderr[-1000:]}"
        )
    pod_ids = [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods]
    return Connectivity(
        pairs=parse_output(proc.stdout),
        namespaces=[ns["metadata"]["name"] for ns in namespaces],
        pods=pod_ids,
        raw=proc.stdout,
    )


# ---------------------------------------------------------------- matrix


@dataclass
class Matrix:
    rows: list[str]
    """Source namespaces, in display order."""
    columns: list[str]
    """Destination namespaces, in display order."""
    cells: dict[tuple[str, str], str]
    """(row, column) -> allowed ports as text, "—" for none."""
    more: int
    """Configured tenants beyond TENANT_CAP, not drawn individually."""
    synthetic: list[str]
    """Rows that are proof fixtures (not configured tenants)."""


def split_tenants(tenants: list[str]) -> tuple[list[str], int]:
    shown = list(dict.fromkeys(tenants))[:TENANT_CAP]
    return shown, max(0, len(dict.fromkeys(tenants)) - len(shown))


def policy_columns(policies: list[dict]) -> list[str]:
    """Destination columns: the namespaces the policies protect, in order, then ``litellm``."""
    cols = list(dict.fromkeys(p["metadata"]["namespace"] for p in policies))
    return cols + [c for c in ("litellm",) if c not in cols]


def build_matrix(conn: Connectivity, tenants: list[str], columns: Optional[Iterable[str]] = None) -> Matrix:
    columns = list(columns or COLUMNS)
    shown, more = split_tenants(tenants)
    fixtures = [t for t in fixture_tenants() if t not in shown]
    # Policy namespaces that are not platform rows (e.g. agent namespaces) get a row of their own.
    own = [c for c in columns if c not in PLATFORM_ROWS and c in conn.namespaces and c not in shown + fixtures]
    rows = [r for r in PLATFORM_ROWS if r in conn.namespaces] + own + shown + fixtures
    cells = {
        (r, c): str(conn.between(r, c)) if conn.comparable(r, c) else "n/a" for r in rows for c in columns
    }
    return Matrix(rows=rows, columns=columns, cells=cells, more=more, synthetic=fixtures)


def _row_label(m: Matrix, row: str) -> str:
    return f"{row} (proof fixture)" if row in m.synthetic else row


def render_markdown(m: Matrix) -> str:
    out = [
        "# SR1 connectivity (computed by network-config-analyzer)",
        "",
        "Allowed TCP destination ports from pods in a source namespace (rows) to pods in the "
        "protected namespaces and `litellm` (columns), the union over all pod pairs; `—` = no "
        "connection; `n/a` = the synthetic namespace has a single pod, so there is no pod-to-pod pair "
        "to analyse. A namespace's own cell (e.g. `serving` → `serving`) comes only from its labelled "
        "platform clients (gateway proxies, endpoint pickers, llm-d pods, benchmarks); other pods there "
        "reach nothing (see docs/sr1-network-policies.md). Computed by `nca --connectivity` over the "
        "synthetic cluster in `data/netpol-cluster/` with the rendered NetworkPolicies; node-local "
        "kubelet probes are not modelled (always allowed).",
        "",
        "| source namespace | " + " | ".join(f"`{c}`" for c in m.columns) + " |",
        "|---|" + "---|" * len(m.columns),
    ]
    for r in m.rows:
        out.append(f"| `{_row_label(m, r)}` | " + " | ".join(m.cells[(r, c)] for c in m.columns) + " |")
    if m.more:
        out.append(f"| +{m.more} more tenants | " + " | ".join("same as any tenant" for _ in m.columns) + " |")
    out += [
        "",
        "Proof fixtures: `team-evil` carries labels copied from trusted namespaces (`name: monitoring`, ...); "
        "`team-a/litellm-impostor-0` carries a LiteLLM pod's labels; `team-a/platform-impostor-0` carries the "
        "gateway-proxy, endpoint-picker, llm-d and benchmark labels.",
    ]
    if m.more:
        out.append(
            f"{m.more} configured tenants beyond the first {TENANT_CAP} are not analysed one by one: "
            "the policies never name a tenant, so every tenant namespace gets the same row."
        )
    return "\n".join(out) + "\n"


def render_svg(m: Matrix) -> str:
    label_w, col_w, row_h, top, pad = 240, 150, 28, 64, 12
    rows = [(r, _row_label(m, r), [m.cells[(r, c)] for c in m.columns]) for r in m.rows]
    if m.more:
        rows.append(("", f"+{m.more} more tenants", ["same as tenants"] * len(m.columns)))
    width = pad * 2 + label_w + col_w * len(m.columns)
    height = top + row_h * (len(rows) + 1) + pad * 2 + 16
    family = 'font-family="DejaVu Sans, Arial, sans-serif"'
    font = f'{family} font-size="12"'
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{pad}" y="24" {family} font-size="15" font-weight="bold">SR1 connectivity (network-config-analyzer)</text>',
        f'<text x="{pad}" y="44" {font} fill="#555555">allowed TCP ports, source namespace → destination; — = denied; all = every port</text>',
    ]
    y = top
    out.append(f'<rect x="{pad}" y="{y}" width="{width - 2 * pad}" height="{row_h}" fill="#37474f"/>')
    out.append(f'<text x="{pad + 8}" y="{y + 18}" {font} fill="#ffffff" font-weight="bold">source \\ destination</text>')
    for i, c in enumerate(m.columns):
        x = pad + label_w + i * col_w
        out.append(f'<text x="{x + 8}" y="{y + 18}" {font} fill="#ffffff" font-weight="bold">{escape(c)}</text>')
    for j, (_, label, cells) in enumerate(rows):
        y = top + row_h * (j + 1)
        out.append(f'<rect x="{pad}" y="{y}" width="{label_w}" height="{row_h}" fill="#eceff1" stroke="#ffffff"/>')
        out.append(f'<text x="{pad + 8}" y="{y + 18}" {font}>{escape(label)}</text>')
        for i, cell in enumerate(cells):
            x = pad + label_w + i * col_w
            fill = "#f5f5f5" if cell in ("—", "n/a") else ("#ffe0b2" if cell == "all" else "#c8e6c9")
            out.append(f'<rect x="{x}" y="{y}" width="{col_w}" height="{row_h}" fill="{fill}" stroke="#ffffff"/>')
            out.append(f'<text x="{x + 8}" y="{y + 18}" {font}>{escape(cell)}</text>')
    y = top + row_h * (len(rows) + 1) + 20
    out.append(f'<text x="{pad}" y="{y}" {font} fill="#555555">node-local kubelet probes are always allowed and not shown</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_matrix(policies: list[dict], tenants: list[str], out_dir: Path) -> None:
    """Run nca and write ``connectivity.md`` and ``connectivity.svg`` into ``out_dir``."""
    shown, _ = split_tenants(list(tenants))
    conn = analyse(policies, shown)
    m = build_matrix(conn, list(tenants), policy_columns(policies))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "connectivity.md").write_text(render_markdown(m), encoding="utf-8")
    (out_dir / "connectivity.svg").write_text(render_svg(m), encoding="utf-8")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policies", type=Path, help="multi-document YAML of NetworkPolicies (default: build_policies(defaults))")
    ap.add_argument("--tenant", action="append", default=[], help="tenant namespace (repeatable)")
    ap.add_argument("--out", type=Path, help="write connectivity.md and connectivity.svg here")
    ap.add_argument("--raw", action="store_true", help="print nca's raw output")
    args = ap.parse_args(argv)
    if args.policies:
        policies = [d for d in yaml.safe_load_all(args.policies.read_text()) if d]
    else:
        sys.path.insert(0, str(ROOT))
        from components.config import NetworkPolicyConfig
        from components.network_policy import build_policies

        policies = build_policies(NetworkPolicyConfig())
    try:
        if args.out:
            write_matrix(policies, args.tenant, args.out)
            print(f"wrote {args.out / 'connectivity.md'} and {args.out / 'connectivity.svg'}")
        else:
            shown, _ = split_tenants(args.tenant)
            conn = analyse(policies, shown)
            print(conn.raw if args.raw else render_markdown(build_matrix(conn, args.tenant, policy_columns(policies))), end="")
    except NcaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
