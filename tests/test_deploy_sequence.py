"""tools/deploy.py, the sequence deploy.yaml runs, against a recording stand-in for the CLI.

The real engine runs the same function in `make e2e` (first-deploy-plan: two phases, no "violates plan");
here: which plans are saved, gated and applied, in which order, and what stops the sequence.
"""

from __future__ import annotations

import io
import json
import pathlib
from typing import Any, Sequence

import pytest

from tools import deploy

STACK = "urn:pulumi:dev::llm-platform::pulumi:pulumi:Stack::llm-platform-dev"
GCP = "urn:pulumi:dev::llm-platform::pulumi:providers:gcp::default"
CLUSTER = "urn:pulumi:dev::llm-platform::llm-platform:cluster:GkeCluster$gcp:container/cluster:Cluster::llm-dev"
K8S = "urn:pulumi:dev::llm-platform::llm-platform:cluster:GkeCluster$pulumi:providers:kubernetes::llm-dev-k8s"
RELEASE = "urn:pulumi:dev::llm-platform::llm-platform:security:Kyverno$kubernetes:helm.sh/v3:Release::kyverno"
COMPONENT = "urn:pulumi:dev::llm-platform::llm-platform:cluster:GkeCluster::gke"


def step(urn: str, typ: str, provider: str = "", custom: bool = True, op: str = "create", **inputs: Any) -> dict:
    state = {"urn": urn, "type": typ, "custom": custom, "inputs": inputs}
    if provider:
        state["provider"] = f"{provider}::{deploy.UNKNOWN}"
    return {"op": op, "urn": urn, "newState": state}


def digest(kubeconfig: str, op: str = "create") -> dict:
    return {"changeSummary": {op: 4}, "steps": [
        step(STACK, "pulumi:pulumi:Stack", custom=False),
        step(GCP, "pulumi:providers:gcp", project="p"),
        step(COMPONENT, "llm-platform:cluster:GkeCluster", custom=False),
        step(CLUSTER, "gcp:container/cluster:Cluster", GCP, op=op, name="llm-dev"),
        step(K8S, "pulumi:providers:kubernetes", kubeconfig=kubeconfig, clusterIdentifier="gke/p/l/llm-dev"),
        step(RELEASE, "kubernetes:helm.sh/v3:Release", K8S, chart="kyverno"),
    ]}


class Recorder:
    """Answers previews from a script of digests and records every call."""

    def __init__(self, *digests: dict):
        self.digests = list(digests)
        self.calls: list[tuple[str, str, tuple[str, ...]]] = []

    def preview(self, plan: pathlib.Path, targets: Sequence[str]) -> dict[str, Any]:
        self.calls.append(("preview", plan.name, tuple(targets)))
        return self.digests.pop(0)

    def up(self, plan: pathlib.Path, targets: Sequence[str]) -> None:
        self.calls.append(("up", plan.name, tuple(targets)))


def test_a_known_cluster_deploys_from_one_gated_plan(tmp_path):
    engine = Recorder(digest("apiVersion: v1"))
    assert deploy.deploy(engine, tmp_path, io.StringIO()).phases == 1
    assert engine.calls == [("preview", "deploy.plan.json", ()), ("up", "deploy.plan.json", ())]


def test_the_first_deploy_applies_the_known_providers_resources_first(tmp_path):
    first_phase = {"steps": [step(GCP, "pulumi:providers:gcp"), step(CLUSTER, "gcp:container/cluster:Cluster", GCP)]}
    engine = Recorder(digest(deploy.UNKNOWN), first_phase, digest("apiVersion: v1"))
    log = io.StringIO()
    assert deploy.deploy(engine, tmp_path, log).phases == 2
    targets = (GCP, CLUSTER)  # custom resources with a known provider; not the unknown provider, its release
    assert engine.calls == [
        ("preview", "deploy.plan.json", ()),
        ("preview", "first-phase.plan.json", targets),
        ("up", "first-phase.plan.json", targets),
        ("preview", "deploy.plan.json", ()),
        ("up", "deploy.plan.json", ()),
    ]
    assert "llm-dev-k8s" in log.getvalue()


def test_a_refused_gate_stops_before_any_up(tmp_path):
    engine = Recorder(digest("apiVersion: v1", op="replace"))
    with pytest.raises(deploy.DeployError, match="replacement gate refused"):
        deploy.deploy(engine, tmp_path, io.StringIO())
    assert [c[0] for c in engine.calls] == ["preview"]


def test_a_refused_first_phase_stops_before_its_up(tmp_path):
    engine = Recorder(digest(deploy.UNKNOWN), digest("apiVersion: v1", op="delete"))
    with pytest.raises(deploy.DeployError, match="the first phase"):
        deploy.deploy(engine, tmp_path, io.StringIO())
    assert "up" not in [c[0] for c in engine.calls]


def test_a_provider_still_unknown_is_an_error_not_an_ungated_up(tmp_path):
    engine = Recorder(digest(deploy.UNKNOWN), {"steps": []}, digest(deploy.UNKNOWN))
    with pytest.raises(deploy.DeployError, match="still unknown"):
        deploy.deploy(engine, tmp_path, io.StringIO())
    assert engine.calls[-1][0] == "preview", "no up after the second preview"


def test_unknown_is_found_nested_and_only_in_providers():
    d = digest("apiVersion: v1")
    d["steps"][4]["newState"]["inputs"]["kubeconfig"] = {"contexts": [{"cluster": deploy.UNKNOWN}]}
    d["steps"][5]["newState"]["inputs"]["values"] = deploy.UNKNOWN  # an unknown input of a resource is normal
    assert deploy.unknown_providers(d) == [K8S]
    assert json.dumps(deploy.known_targets(d, [K8S])) == json.dumps([GCP, CLUSTER])
