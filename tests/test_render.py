"""Offline render (`make synth`): complete, deterministic, and all-or-nothing on bad config."""

import gc
import json
import subprocess
import sys

import pytest

from components import yaml_io
from tools import mockrun

ROOT = mockrun.ROOT


def synth(stack, out, *extra):
    return subprocess.run(
        [sys.executable, "-m", "tools.render", "--stack", stack, "--out", str(out), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )


def synth_here(capsys, stack, out, *extra):
    """The CLI's `main` in this interpreter (no second import of the SDKs): (exit code, stdout, stderr)."""
    from tools import render

    code = render.main(["--stack", stack, "--out", str(out), *extra])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess([], code, captured.out, captured.err)


def _load(text):
    # The CRDs are rendered as JSON (a YAML subset; test_rendered_crds_are_the_vendored_crds parses one as
    # YAML too): json reads them in C, where YAML would take seconds.
    if text.startswith("{"):
        return json.loads(text)
    return yaml_io.load(text)


def tree(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def prod_render(rendered):
    out, stdout = rendered("prod")
    return out, stdout


def test_render_is_deterministic(prod_render, tmp_path):
    """The one second render: through the CLI, in a fresh interpreter (another hash seed)."""
    a, _ = prod_render
    second = synth("prod", tmp_path / "b")
    assert second.returncode == 0, second.stderr
    b = tmp_path / "b"
    left, right = tree(a), tree(b)
    assert sorted(left) == sorted(right), "two renders must write the same files"
    different = [name for name in left if left[name] != right[name]]
    assert different == [], f"two renders must be byte-identical; differ: {different}"


def test_render_writes_kubernetes_objects_and_cloud_resources(prod_render):
    out, stdout = prod_render
    cluster = _load((out / "cloud" / "gcp_container_cluster_Cluster.llm-prod.yaml").read_text())
    assert cluster["inputs"]["datapathProvider"] == "ADVANCED_DATAPATH", "rendered cluster: Dataplane V2"
    assert cluster["options"]["protect"] is True
    k8s = sorted(p.name for p in (out / "k8s").iterdir())
    assert "Namespace._cluster.kyverno.yaml" in k8s
    assert "ClusterPolicy._cluster.require-kueue-queue-name.yaml" in k8s
    assert sum(n.startswith("CustomResourceDefinition.") for n in k8s) == 22
    assert "Namespace._cluster.team-a.yaml" in k8s, "the stack creates the cluster: tenant namespaces are created (or adopted)"
    assert {"Namespace._cluster.serving.yaml", "Namespace._cluster.inference.yaml"} <= set(k8s), "SR1 namespaces are owned"
    release = _load((out / "cloud" / "kubernetes_helm.sh_v3_Release.kyverno.yaml").read_text())
    assert release["inputs"]["version"] == "3.8.1"
    for name in k8s:
        obj = _load((out / "k8s" / name).read_text())
        assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"], f"{name}: incomplete object"
    assert "resources rendered to" in stdout and "gcp:container/cluster:Cluster" in stdout, "summary table printed"


def test_bad_config_writes_nothing(tmp_path, capsys):
    stack_file = tmp_path / "Pulumi.bad.yaml"
    good = _load((ROOT / "Pulumi.dev.yaml").read_text())
    good["config"]["llm-platform:cluster"]["nodePools"][1]["gpu"].pop("count")
    stack_file.write_text(yaml_io.dump(good))
    out = tmp_path / "out"
    result = synth_here(capsys, "bad", out, "--stack-file", str(stack_file))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "llm-platform:cluster.nodePools[1].gpu.count" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, "a config error is one clear line, not a traceback"
    assert not out.exists() and list(tmp_path.glob(".out-*")) == [], "nothing may be written on bad config"


def test_unknown_stack_is_a_clear_error(tmp_path, capsys):
    result = synth_here(capsys, "staging", tmp_path / "x")
    assert result.returncode == 2 and "no stack file Pulumi.staging.yaml" in result.stderr


def test_readme_picture_is_the_current_prod_matrix(prod_render):
    out, _ = prod_render
    for name in ("connectivity.svg", "connectivity.md"):
        committed = ROOT / "docs" / name.replace("connectivity", "connectivity-prod")
        assert committed.read_bytes() == (out / name).read_bytes(), (
            f"docs/{committed.name} is stale: run `make synth STACK=prod` and copy build/prod/{name}"
        )


def test_rendered_builtin_objects_are_valid_kubernetes(prod_render):
    """Every built-in object of the render validates against the Kubernetes 1.33 OpenAPI schemas."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    out, _ = prod_render
    checked = 0
    for path in sorted((out / "k8s").glob("*.yaml")):
        obj = _load(path.read_text())
        if "." in obj["apiVersion"].split("/")[0] and not obj["apiVersion"].startswith(
            ("networking.k8s.io/", "apiextensions.k8s.io/")
        ):
            continue  # custom resources (ClusterPolicy) are checked against their CRD schema elsewhere
        try:
            kubernetes_validate.validate(obj, "1.33.0", strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{path.name} is not a valid Kubernetes 1.33 object: {err.message}")
        checked += 1
    assert checked >= 22 + 1 + 7, f"expected the CRDs, namespaces and NetworkPolicies to be checked, got {checked}"


def test_render_refuses_what_the_strict_model_refuses(tmp_path, capsys):
    # Private nodes without Cloud NAT: the Kyverno images could not be pulled on a real first up.
    stack_file = tmp_path / "Pulumi.nonat.yaml"
    cfg = _load((ROOT / "Pulumi.prod.yaml").read_text())
    cfg["config"]["llm-platform:cluster"]["cloudNat"] = False
    stack_file.write_text(yaml_io.dump(cfg))
    out = tmp_path / "out"
    frozen = gc.get_freeze_count()
    result = synth_here(capsys, "nonat", out, "--stack-file", str(stack_file))
    # Only the `make synth` command (one-shot) leaves the run's heap frozen; an in-process render must not.
    assert gc.get_freeze_count() == frozen, "render.main in a process that goes on left the mock run's heap frozen"
    assert result.returncode == 1, result.stdout + result.stderr
    assert "would be refused" in result.stderr and "[egress]" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists(), "nothing may be written when the strict model refuses"


def test_rendered_crds_are_the_vendored_crds(prod_render):
    """The CRDs are written as JSON (a YAML subset, fast to write): each parses back to the vendored CRD."""
    from components import kyverno

    out, _ = prod_render
    # crd_manifests() is the JSON copy, kept equal to the vendored YAML by test_crd_json_cache_is_the_vendored_yaml
    vendored = {c["metadata"]["name"]: c for c in kyverno.crd_manifests()}
    rendered = {}
    for path in sorted((out / "k8s").glob("CustomResourceDefinition._cluster.*.yaml")):
        text = path.read_text()
        assert text.startswith("{"), f"{path.name}: CRDs are written as JSON"
        obj = _load(text)
        rendered[obj["metadata"]["name"]] = obj
    assert sorted(rendered) == sorted(vendored), "every vendored CRD is rendered, nothing else"
    for name, crd in vendored.items():
        assert rendered[name] == crd, f"rendered CRD {name} differs from vendor/kyverno/3.8.1/crds"
    smallest = min((out / "k8s").glob("CustomResourceDefinition._cluster.*.yaml"), key=lambda p: p.stat().st_size)
    as_yaml = yaml_io.load(smallest.read_text())
    assert as_yaml == rendered[as_yaml["metadata"]["name"]], f"{smallest.name}: the JSON must read the same as YAML"
