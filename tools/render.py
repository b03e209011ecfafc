"""Offline render: `make synth STACK=<stack> [OUT=<dir>]`.

Runs the same __main__.py under Pulumi mocks with Pulumi.<stack>.yaml and writes
  OUT/k8s/<kind>.<namespace>.<name>.yaml   every Kubernetes object, as it would be applied
                                           (.patch.yaml: a server-side patch of an existing object)
  OUT/cloud/<type>.<name>.yaml             every other resource: type, inputs, options
  OUT/connectivity.{md,svg}                SR1 connectivity matrix (when security is on)
  OUT/guardrails-report.md                 the guardrail catalog, in Audit, against the reference
                                           platform's manifests (when the catalog is enabled)
then prints a summary. Deterministic; needs no Pulumi CLI, credentials or network. On bad
config, or when the strict API-server model (tools/apiserver.py) refuses the first `pulumi up`,
it prints the error, exits non-zero and writes nothing.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import pulumi

from components import yaml_io
from components.config import StackConfig, parse
from tools import mockrun


def _normalise(value: Any) -> Any:
    # Pulumi's wire format carries every number as a float; Kubernetes wants integers.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _dump(data: Any) -> str:
    # libyaml's C emitter (yaml_io): the pure-Python one spends seconds on the 650 KB of CRDs.
    return yaml_io.dump(data, sort_keys=True, default_flow_style=False, width=120)


def _dump_json(data: Any) -> str:
    # The 22 vendored CRDs are most of the render's bytes: JSON (a subset of YAML, applied as is by kubectl)
    # is written by C code end to end (no indent: json's C encoder does not indent), where the YAML
    # representer walks every node in Python.
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"


def of_kinds(objects: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in kinds]


def _short_urn(urn: str) -> str:
    return urn.split("::")[-2].split("$")[-1] + "::" + urn.split("::")[-1] if urn else ""


@dataclass
class Written:
    counts: dict[str, int]
    """Resources per type."""
    objects: list[dict[str, Any]]
    """Every Kubernetes object written, as applied (plain manifests, in registration order)."""


def write(records: list[mockrun.Registration], out: pathlib.Path) -> Written:
    """Write the render for `records` under `out`."""
    counts: dict[str, int] = collections.Counter()
    objects: list[dict[str, Any]] = []
    k8s_dir, cloud_dir = out / "k8s", out / "cloud"
    k8s_dir.mkdir(parents=True)
    cloud_dir.mkdir(parents=True)
    for rec in records:
        counts[rec.type] += 1
        if rec.is_kubernetes_object:
            obj = _normalise(rec.inputs)
            objects.append(obj)
            meta = obj.get("metadata", {})
            fname = ".".join(_safe(p) for p in (obj["kind"], meta.get("namespace", "_cluster"), meta.get("name", rec.name)))
            # A *Patch resource owns only the fields it names, on an object someone else created.
            path = k8s_dir / (f"{fname}.patch.yaml" if rec.type.endswith("Patch") else f"{fname}.yaml")
            if path.exists():
                raise RuntimeError(f"two Kubernetes objects render to {path.name}: names must be unique")
            path.write_text(_dump_json(obj) if obj["kind"] == "CustomResourceDefinition" else _dump(obj), encoding="utf-8")
        else:
            doc = {
                "type": rec.type,
                "name": rec.name,
                "inputs": _normalise(rec.inputs),
                "options": {
                    "parent": _short_urn(rec.parent),
                    "dependsOn": sorted(_short_urn(d) for d in rec.dependencies),
                    "protect": rec.protect,
                    "retainOnDelete": rec.retain_on_delete,
                },
            }
            path = cloud_dir / f"{_safe(rec.type)}.{_safe(rec.name)}.yaml"
            path.write_text(_dump(doc), encoding="utf-8")
    return Written(dict(counts), objects)


class StrictModelError(Exception):
    """The strict API-server model refuses what the stack would do on its first `pulumi up`."""


def strict_refusals(settings: StackConfig, records: list[mockrun.Registration]) -> list[Any]:
    """Replay the records against tools/apiserver.py: a new cluster, or (existingCluster) one holding
    exactly the namespaces the config declares pre-existing."""
    from components.namespaces import declared_existing_namespaces
    from tools import apiserver

    declared = declared_existing_namespaces(settings)
    return apiserver.check(
        records,
        apiserver.Cluster(namespaces=set(declared)),
        declared,
        creates_cluster=settings.cluster is not None,
    )


def render(
    stack: str,
    out: pathlib.Path,
    stack_file: pathlib.Path | None = None,
    records: list[mockrun.Registration] | None = None,
    one_shot: bool = False,
) -> Rendered:
    """Render `stack` into `out` (replaced only when the whole render succeeded).

    ``records``: what a mock run of the same stack config already registered (the tests share one run).
    ``one_shot``: the process exits after this render (see :func:`tools.mockrun.run`).
    """
    raw = mockrun.stack_config(stack, stack_file=stack_file)
    if records is None:
        records = mockrun.run(stack, raw, one_shot=one_shot)
    # The program validated this config already (it raises pulumi.RunError otherwise); parse it once more,
    # through the typed module, for what the render needs beyond the records.
    settings = parse(raw, stack)
    refusals = strict_refusals(settings, records)
    if refusals:
        raise StrictModelError(
            f"stack {stack}: a first `pulumi up` would be refused:\n" + "\n".join(f"  {r}" for r in refusals)
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        written = write(records, tmp)
        policies = of_kinds(written.objects, "NetworkPolicy")
        guardrail_objects = of_kinds(written.objects, "ClusterPolicy", "PolicyException")
        # Written: the CRD schemas in the records are most of the render's data, and nca's import comes next.
        # (Records a caller passed in stay the caller's.)
        counts = written.counts
        del records, written
        if policies:
            from tools.matrix import write_matrix

            # Columns in the config's order of protected namespaces, then the other namespaces by name, whatever
            # order the engine registered in (a mock run's order follows dependency resolution and timing).
            order = {ns: i for i, ns in enumerate(settings.network_policy.protected_namespace_names)}
            policies.sort(key=lambda o: (order.get(o["metadata"]["namespace"], len(order)), o["metadata"]["namespace"],
                                         o["metadata"]["name"]))
            write_matrix(policies, list(settings.tenants), tmp)
        from tools.guardrail_report import write_report

        write_report(stack, guardrail_objects, tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return Rendered(counts, guardrail_actions(guardrail_objects))


@dataclass
class Rendered:
    counts: dict[str, int]
    """Resources per type."""
    guardrails: list[tuple[str, str]]
    """(name, action) of each guardrail catalog policy rendered: validate failureAction(s), or mutate/generate."""


def guardrail_actions(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for policy in sorted(of_kinds(objects, "ClusterPolicy"), key=lambda p: p["metadata"]["name"]):
        if not policy["metadata"]["name"].startswith("guardrail-"):
            continue
        rules = policy["spec"]["rules"]
        actions = sorted({r["validate"]["failureAction"] for r in rules if "validate" in r})
        other = "mutate" if any("mutate" in r for r in rules) else "generate"
        out.append((policy["metadata"]["name"], "/".join(actions) or other))
    return out


def summary(stack: str, out: pathlib.Path, counts: dict[str, int]) -> str:
    width = max(len(t) for t in counts) if counts else 10
    lines = [f"stack {stack}: {sum(counts.values())} resources rendered to {out}", ""]
    lines.append(f"{'type'.ljust(width)}  count")
    lines.append(f"{'-' * width}  -----")
    for t in sorted(counts):
        lines.append(f"{t.ljust(width)}  {counts[t]:>5}")
    return "\n".join(lines)


def guardrails_summary(guardrails: list[tuple[str, str]], out: pathlib.Path) -> str:
    """Which guardrail policies the stack enables, with their action."""
    if not guardrails:
        return "\nguardrail catalog: not enabled"
    lines = ["", "guardrail catalog (policies/kyverno/guardrail-*):"]
    lines += [f"  {name:<40} {action}" for name, action in guardrails]
    report = out / "guardrails-report.md"
    if report.exists():
        lines.append(f"  report on the reference platform: {report}")
    return "\n".join(lines)


def main(argv: list[str] | None = None, one_shot: bool = False) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help=f"one of: {', '.join(mockrun.available_stacks())}")
    parser.add_argument("--out", help="output directory (default build/<stack>)")
    parser.add_argument("--stack-file", type=pathlib.Path, help="read config from this file instead of Pulumi.<stack>.yaml")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out or f"build/{args.stack}")
    try:
        rendered = render(args.stack, out, args.stack_file, one_shot=one_shot)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except StrictModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except pulumi.RunError as err:  # the program's own error (bad config): the message is the whole story
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(summary(args.stack, out, rendered.counts))
    print(guardrails_summary(rendered.guardrails, out))
    return 0


if __name__ == "__main__":
    # The command exits right after the render: its heap is never collected again (about 1.3 s of a
    # 3.3 s prod render went to a full collection and the interpreter's teardown walking it).
    sys.exit(main(one_shot=True))
