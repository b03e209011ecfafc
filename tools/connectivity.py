"""CLI for the SR1 connectivity of NetworkPolicies, computed by IBM's network-config-analyzer (nca).

The work is done by :mod:`tools.platform_model` (the synthetic cluster), :mod:`tools.nca` (running and
parsing nca) and :mod:`tools.matrix` (the markdown/SVG matrix the render writes).

    python -m tools.connectivity [--policies FILE.yaml] [--tenant NAME ...] [--out DIR] [--raw]

Without ``--policies`` it analyses ``build_policies(NetworkPolicyConfig())`` (the defaults).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from components import yaml_io
from tools.matrix import build_matrix, policy_columns, render_markdown, split_tenants, write_matrix
from tools.nca import NcaError, analyse


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policies", type=Path, help="multi-document YAML of NetworkPolicies (default: build_policies(defaults))")
    ap.add_argument("--tenant", action="append", default=[], help="tenant namespace (repeatable)")
    ap.add_argument("--out", type=Path, help="write connectivity.md and connectivity.svg here")
    ap.add_argument("--raw", action="store_true", help="print nca's raw output")
    args = ap.parse_args(argv)
    if args.policies:
        policies = [d for d in yaml_io.load_all(args.policies.read_text()) if d]
    else:
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
