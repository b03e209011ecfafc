"""components/pod_templates.py: the pod-template kinds table, the CEL and kinds it gives the guardrail
policies, and the sync that keeps the YAML files equal to it."""

import shutil

import pytest

from components import pod_templates, yaml_io
from components.pod_templates import PodTemplateKind
from tools import kyverno_eval, pod_security

ROOT = pod_templates.ROOT
FILES = pod_templates.guardrail_files()
SECURITY = "guardrail-security-baseline"
EXTENDED = pod_templates.POD_TEMPLATE_KINDS + (
    PodTemplateKind("apps/v1/ReplicaSet", "spec.template"),
    PodTemplateKind("example.com/v1/Runner", "spec.runner.podTemplate"),
    PodTemplateKind("example.com/v1/Batch", "spec.runner.podTemplate"),
)


def _object(k: PodTemplateKind, field: str, marker: dict) -> dict:
    """An object of kind `k` whose pod template has `marker` as its `field` (spec or metadata)."""
    template: dict = {field: marker}
    for key in reversed(k.keys):
        template = {key: template}
    return {"apiVersion": "v1", "kind": k.name, **template}


def _eval(expression: str, obj: dict):
    return kyverno_eval.compile_expr(expression).eval(data={"object": obj}).plain_value()


def _pod_rules(path):
    for rule in yaml_io.load(path.read_text())["spec"]["rules"]:
        names = {v["name"] for v in rule.get("validate", {}).get("cel", {}).get("variables", [])}
        if names & set(pod_templates.POD_VARIABLES):
            yield rule


def _copy(tmp_path):
    """The guardrail policy files under a temporary project root."""
    for path in FILES:
        dest = tmp_path / path.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    return tmp_path


def test_guardrail_files_agree_with_the_table():
    notes: list[str] = []
    stale = pod_templates.out_of_sync(ROOT, notes=notes)
    assert not stale, (f"{', '.join(str(p.relative_to(ROOT)) for p in stale)} out of sync with "
                       f"components/pod_templates.py: run `{pod_templates.COMMAND}`\n" + "\n".join(notes))


def test_every_pod_template_rule_reads_each_kind_at_its_path():
    rules = [(p.parent.name, r) for p in FILES for r in _pod_rules(p)]
    assert len(rules) >= 10, "the guardrails that read pod templates"
    for policy, rule in rules:
        where = f"{policy}/{rule['name']}"
        variables = {v["name"]: v["expression"] for v in rule["validate"]["cel"]["variables"]}
        for name, field in pod_templates.POD_VARIABLES.items():
            for k in pod_templates.POD_TEMPLATE_KINDS:
                marker = {"marker": f"{k.kind} {field}"}
                assert _eval(variables[name], _object(k, field, marker)) == marker, f"{where}: {name} of {k.kind}"
        for flt in rule["match"]["any"]:
            kinds = flt["resources"]["kinds"]
            subresources = [k for k in kinds if k.rpartition("/")[2][:1].islower()]
            assert [k for k in kinds if k not in subresources] == pod_templates.kyverno_kinds(), f"{where}: kinds"


def test_generated_cel_reads_a_new_kind_and_a_shared_new_path():
    lines = pod_templates.cel_lines("spec", EXTENDED)
    assert "object.kind in ['Runner', 'Batch']" in lines[-2], "kinds sharing a path share one branch"
    expression = pod_templates.variable_expression("podSpec", EXTENDED)
    for k in EXTENDED:
        assert _eval(expression, _object(k, "spec", {"m": k.kind})) == {"m": k.kind}, k.kind
    assert _eval(expression, {"kind": "Runner", "spec": {"template": {"spec": {"m": 1}}}}) == {}, \
        "a table kind is read at its own path only"


def test_check_reports_a_changed_expression_and_write_restores_it(tmp_path, capsys):
    root = _copy(tmp_path)
    target = root / "policies/kyverno/guardrail-ownership/guardrail-ownership.yaml"
    original = target.read_text()
    # The second rule's podMeta reads a CronJob's Job metadata instead of its pod template's.
    second = original.index("name: podMeta", original.index("name: podMeta") + 1)
    cronjob = original.index(".?jobTemplate.?spec.?template.?metadata", second)
    target.write_text(original[:cronjob] + ".?jobTemplate.?metadata" +
                      original[cronjob + len(".?jobTemplate.?spec.?template.?metadata"):])
    assert target.read_text() != original

    assert pod_templates.out_of_sync(root) == [target]
    assert pod_templates.main(["--root", str(root)]) == 1
    out = capsys.readouterr()
    assert "policies/kyverno/guardrail-ownership/guardrail-ownership.yaml: out of sync" in out.out
    assert pod_templates.COMMAND in out.err

    assert pod_templates.main(["--root", str(root), "--write"]) == 0
    assert target.read_text() == original, "the sync restores the file byte for byte"
    assert pod_templates.main(["--root", str(root)]) == 0


def test_check_reports_a_changed_kinds_list_and_write_restores_it(tmp_path):
    root = _copy(tmp_path)
    missing = root / f"policies/kyverno/{SECURITY}/{SECURITY}.yaml"
    foreign = root / "policies/kyverno/guardrail-memory-bounds/guardrail-memory-bounds.yaml"
    originals = {p: p.read_text() for p in (missing, foreign)}
    missing.write_text(originals[missing].replace("                - apps/v1/DaemonSet\n", "", 1))
    foreign.write_text(originals[foreign].replace("                - batch/v1/Job\n",
                                                  "                - batch/v1/Job\n"
                                                  "                - resource.k8s.io/v1/ResourceClaim\n", 1))
    notes: list[str] = []
    assert pod_templates.out_of_sync(root, notes=notes) == sorted([missing, foreign])
    assert any("guardrail-memory-bounds" in n and "'resource.k8s.io/v1/ResourceClaim'" in n for n in notes), notes

    pod_templates.out_of_sync(root, write=True)
    assert {p: p.read_text() for p in originals} == originals


def test_a_table_change_rewrites_only_its_spots_and_keeps_comments():
    path = ROOT / f"policies/kyverno/{SECURITY}/{SECURITY}.yaml"
    text = path.read_text()
    new = pod_templates.sync_text(text, path.name, EXTENDED)
    comments = [line for line in text.splitlines() if line.strip().startswith("#")]
    assert [line for line in new.splitlines() if line.strip().startswith("#")] == comments
    policy = yaml_io.load(new)
    for rule in policy["spec"]["rules"]:
        variables = {v["name"]: v["expression"] for v in rule["validate"]["cel"]["variables"]}
        assert variables["podSpec"] == pod_templates.variable_expression("podSpec", EXTENDED)
        kinds = rule["match"]["any"][0]["resources"]["kinds"]
        assert kinds[:len(EXTENDED)] == pod_templates.kyverno_kinds(EXTENDED), rule["name"]
        assert kinds[len(EXTENDED):] in ([], ["Pod/ephemeralcontainers"]), "subresources stay"
    assert pod_templates.sync_text(new, path.name) == text, "and back, byte for byte"


def test_a_kinds_list_the_sync_cannot_edit_is_an_error_naming_the_fix():
    kinds = pod_templates.kyverno_kinds()
    block = "kinds:\n" + "".join(f"                - {k}\n" for k in kinds)
    text = FILES[0].read_text()
    assert block in text
    text = text.replace(block, f"kinds: [{', '.join(kinds)}]\n", 1)
    with pytest.raises(ValueError, match=r"guardrail-approved-models.yaml: rule approved-models-only: `kinds` "
                                         r"must be a block list .*components.pod_templates --write"):
        pod_templates.sync_text(text, FILES[0].name)


def test_stamp_owner_patches_each_kind_at_its_template_path():
    """guardrail-stamp-owner reads no podSpec: it has one mutate rule per template path instead."""
    policy = yaml_io.load((ROOT / "policies/kyverno/guardrail-stamp-owner/guardrail-stamp-owner.yaml").read_text())
    by_kind = {k.kind: k.keys for k in pod_templates.POD_TEMPLATE_KINDS}
    seen = []
    for rule in policy["spec"]["rules"]:
        patch, keys = rule["mutate"]["patchStrategicMerge"], []
        while "metadata" not in patch:
            (key, patch), = patch.items()
            keys.append(key)
        for kind in rule["match"]["any"][0]["resources"]["kinds"]:
            assert by_kind[kind] == tuple(keys), f"{rule['name']}: {kind} patched at {'.'.join(keys)}"
            seen.append(kind)
    assert sorted(seen) == sorted(by_kind), "every pod-template kind gets its owner label"


def test_pod_security_reads_every_table_kind_at_its_path():
    for k in pod_templates.POD_TEMPLATE_KINDS:
        obj = _object(k, "spec", {"containers": [{"name": k.name}]})
        meta, spec = pod_security.pod_of(obj)
        assert spec == {"containers": [{"name": k.name}]}, k.kind
