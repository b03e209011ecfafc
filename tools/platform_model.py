"""The synthetic cluster the SR1 proofs run on: a model of the deployed reference platform.

``data/netpol-cluster/*.yaml`` holds the platform's namespaces and pods (real labels and container
ports); :func:`synthetic_cluster` adds one Namespace and one Pod per configured tenant.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from components import yaml_io

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_DIR = ROOT / "data" / "netpol-cluster"
NAME_LABEL = "kubernetes.io/metadata.name"
TENANT_LABEL = "llm-platform/tenant"


class ModelError(ValueError):
    """The cluster model is inconsistent (e.g. a forged namespace name label)."""


@functools.cache
def _parsed(path: Path) -> Any:
    # Every nca analysis starts from these files: parsed once per process, copied per call.
    return yaml_io.load(path.read_text())


def _load_items(path: Path) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_parsed(path)["items"]))


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
            raise ModelError(f"fixture namespace {ns['metadata']['name']!r}: {NAME_LABEL} must equal its name")
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


