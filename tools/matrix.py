"""The SR1 connectivity matrix: who reaches what, as markdown and a byte-deterministic SVG.

Rows are source namespaces, columns the protected namespaces then ``litellm``; cells are the ports nca
allows. ``write_matrix(policies, tenants, out_dir)`` is what the offline render (``make synth``) calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from xml.sax.saxutils import escape

from components.platform_facts import DEFAULT_PROTECTED_NAMESPACES
from tools.nca import Connectivity, analyse
from tools.platform_model import fixture_tenants

COLUMNS = (*DEFAULT_PROTECTED_NAMESPACES, "litellm")
"""Default destination namespaces of the matrix (``write_matrix`` uses the policies' namespaces + litellm)."""
PLATFORM_ROWS = (
    "litellm", "inference", "serving", "kserve", "llm-d", "agentgateway-system", "monitoring", "gmp-system",
    "cnpg-system", "keda", "kube-system", "default",
)
"""Source namespaces shown first, in this order."""
TENANT_CAP = 6
"""Configured tenants analysed and drawn individually; the rest are summarised as "+N more"."""


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
        "namespaces the policies select (the protected ones, `litellm`, `monitoring`, ...; columns), the union "
        "over all pod pairs; `—` = no "
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


