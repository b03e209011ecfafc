"""CrossGuard guardrails: each validator on passing and failing inputs, and on the real program."""

import ast
import importlib.util
import pathlib
import sys

import pytest
import yaml

PACK = pathlib.Path(__file__).resolve().parent.parent / "policies" / "crossguard"


def _load_pack_module(name: str):
    """The pack's own module, by file (the CLI runs the pack with its folder as the script directory)."""
    spec = importlib.util.spec_from_file_location(name, PACK / f"{name}.py")
    assert spec and spec.loader, f"policies/crossguard/{name}.py not found"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


guardrails = _load_pack_module("guardrails")
Resource = guardrails.Resource

CLUSTER_OK = {"datapathProvider": "ADVANCED_DATAPATH", "addonsConfig": {}}
DENY = {"metadata": {"name": "default-deny-ingress", "namespace": "serving"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
ALLOW = {"metadata": {"name": "allow-model-server", "namespace": "serving"},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"namespaceSelector": {}}]}]}}
SECURITY = Resource("llm-platform:security:Security", "security", {})


@pytest.mark.parametrize(
    "props,violates",
    [
        (CLUSTER_OK, False),
        ({**CLUSTER_OK, "addonsConfig": {"networkPolicyConfig": {"disabled": True}}}, False),
        ({**CLUSTER_OK, "addonsConfig": {"networkPolicyConfig": {"disabled": False}}}, True),
        ({**CLUSTER_OK, "networkPolicy": {"enabled": True, "provider": "CALICO"}}, True),
    ],
    ids=["no-addon", "addon-disabled", "addon-enabled", "legacy-network-policy"],
)
def test_legacy_network_policy_addon(props, violates):
    messages = guardrails.legacy_network_policy_addon("c1", props)
    assert bool(messages) == violates, messages
    if violates:
        assert "cluster c1" in messages[0] and "remove it" in messages[0]


@pytest.mark.parametrize(
    "version,violates",
    [("3.8.1", False), ("3.8.1-rc.1", False), ("", True), (None, True), ("^3.8", True), ("3.x", True),
     (">=3.8.0", True), ("*", True), ("latest", True), ("v3.8.1", True), ("3.8", True)],
)
@pytest.mark.parametrize("typ", guardrails.HELM_TYPES)
def test_kyverno_must_be_pinned(typ, version, violates):
    messages = guardrails.unpinned_kyverno(typ, "kyverno", {"chart": "kyverno", "version": version})
    assert bool(messages) == violates, f"{typ} version {version!r}: {messages}"
    if violates:
        assert "kyverno" in messages[0] and "pin it" in messages[0]


def test_other_charts_are_not_judged():
    assert guardrails.unpinned_kyverno(guardrails.HELM_TYPES[0], "x", {"chart": "kueue", "version": "^1"}) == []


def test_security_requires_dataplane_v2():
    legacy = Resource(guardrails.CLUSTER, "c1", {"datapathProvider": "LEGACY_DATAPATH"})
    unset = Resource(guardrails.CLUSTER, "c2", {})
    messages = guardrails.security_without_dataplane_v2([SECURITY, legacy, unset])
    assert len(messages) == 2 and "cluster c1" in messages[0] and "authored but not enforced" in messages[0]
    assert guardrails.security_without_dataplane_v2([legacy]) == [], "without the security group there is nothing to enforce"
    assert guardrails.security_without_dataplane_v2([SECURITY, Resource(guardrails.CLUSTER, "ok", CLUSTER_OK)]) == []


def test_security_is_detected_from_a_child_urn():
    """Even if a stack validation saw no component resources, a child's URN names its security parent."""
    np_urn = ("urn:pulumi:prod::llm-platform::llm-platform:security:Security$llm-platform:security:NetworkPolicies"
              "$kubernetes:networking.k8s.io/v1:NetworkPolicy::serving-default-deny-ingress")
    child = Resource(guardrails.NETWORK_POLICY, "serving-default-deny-ingress", DENY, np_urn)
    legacy = Resource(guardrails.CLUSTER, "c1", {"datapathProvider": "LEGACY_DATAPATH"},
                      "urn:pulumi:prod::llm-platform::llm-platform:cluster:GkeCluster$gcp:container/cluster:Cluster::c1")
    assert guardrails.security_enabled([child]) and not guardrails.security_enabled([legacy])
    assert len(guardrails.security_without_dataplane_v2([child, legacy])) == 1


def test_network_policies_need_default_deny():
    allow = Resource(guardrails.NETWORK_POLICY, "serving-allow", ALLOW)
    deny = Resource(guardrails.NETWORK_POLICY, "serving-deny", DENY)
    assert guardrails.missing_default_deny([allow, deny]) == []
    messages = guardrails.missing_default_deny([allow])
    assert len(messages) == 1 and "namespace serving" in messages[0]
    selective = {**DENY, "spec": {"podSelector": {"matchLabels": {"app": "x"}}, "policyTypes": ["Ingress"]}}
    assert guardrails.missing_default_deny([allow, Resource(guardrails.NETWORK_POLICY, "d", selective)]), \
        "a deny that selects only some pods is not a default-deny"
    other = {**ALLOW, "metadata": {"name": "a", "namespace": "team-a"}}
    assert guardrails.missing_default_deny([Resource(guardrails.NETWORK_POLICY, "t", other)]) == [], \
        "only protected namespaces are guarded"


def test_a_stack_that_changes_its_protected_namespaces_is_checked_on_its_own_list():
    """The pack reads networkPolicy.protectedNamespaces from the stack's config; before, only the default four."""
    ml = {**ALLOW, "metadata": {"name": "a", "namespace": "ml-serving"}}
    allow_ml = Resource(guardrails.NETWORK_POLICY, "ml-allow", ml)
    protected = guardrails.protected_namespaces({"protectedNamespaces": ["serving", "ml-serving"]})
    assert protected == ("serving", "ml-serving")
    messages = guardrails.missing_default_deny([allow_ml], protected)
    assert len(messages) == 1 and "namespace ml-serving" in messages[0], messages
    assert guardrails.missing_default_deny([allow_ml]) == [], "the default list does not name ml-serving"
    deny_ml = Resource(guardrails.NETWORK_POLICY, "ml-deny", {**DENY, "metadata": {"name": "d", "namespace": "ml-serving"}})
    assert guardrails.missing_default_deny([allow_ml, deny_ml], protected) == []


def test_the_default_list_is_the_stacks_default():
    from components.config import NetworkPolicyConfig

    assert guardrails.protected_namespaces(None) == tuple(NetworkPolicyConfig().protected_namespaces)
    assert guardrails.protected_namespaces({}) == guardrails.DEFAULT_PROTECTED_NAMESPACES


def test_with_security_on_a_protected_namespace_without_any_policy_is_reported():
    """A namespace whose SR1 policies are all missing is as open as one that lost only its default-deny."""
    deny = Resource(guardrails.NETWORK_POLICY, "serving-deny", DENY)
    messages = guardrails.missing_default_deny([SECURITY, deny], ("serving", "inference"))
    assert len(messages) == 1 and "namespace inference: 0 NetworkPolicies" in messages[0], messages
    assert guardrails.missing_default_deny([deny], ("serving", "inference")) == [], \
        "without the security group, only namespaces that have policies are judged"


def _stack_config(stack):
    return yaml.safe_load((PACK.parent.parent / f"Pulumi.{stack}.yaml").read_text())["config"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_program_passes_every_guardrail(stack, program_run):
    resources = [Resource(r.type, r.name, r.inputs, r.urn) for r in program_run(stack)]
    assert guardrails.security_enabled(resources), f"{stack} turns security on: rule (a) must be armed"
    protected = guardrails.protected_namespaces(_stack_config(stack).get("llm-platform:networkPolicy"))
    problems = guardrails.security_without_dataplane_v2(resources) + guardrails.missing_default_deny(resources, protected)
    for r in resources:
        problems += guardrails.unpinned_kyverno(r.type, r.name, r.props)
        if r.type == guardrails.CLUSTER:
            problems += guardrails.legacy_network_policy_addon(r.name, r.props)
    assert problems == [], f"{stack}: the program violates its own guardrails: {problems}"
    assert any(r.type == guardrails.NETWORK_POLICY for r in resources), "the check must see the NetworkPolicies"


def test_validators_accept_the_engines_proxied_props():
    """The engine hands policies read-only Mapping/Sequence proxies, not dicts and lists."""
    from pulumi_policy.proxy import unknown_checking_proxy as proxy

    assert guardrails.legacy_network_policy_addon("c1", proxy({"addonsConfig": {"networkPolicyConfig": {"disabled": False}}}))
    assert guardrails.legacy_network_policy_addon("c1", proxy(CLUSTER_OK)) == []
    assert guardrails.unpinned_kyverno(guardrails.HELM_TYPES[0], "k", proxy({"chart": "kyverno", "version": "3.x"}))
    assert guardrails.unpinned_kyverno(guardrails.HELM_TYPES[0], "k", proxy({"chart": "kyverno", "version": "3.8.1"})) == []
    allow = Resource(guardrails.NETWORK_POLICY, "a", proxy(ALLOW))
    assert guardrails.missing_default_deny([allow])
    assert guardrails.missing_default_deny([allow, Resource(guardrails.NETWORK_POLICY, "d", proxy(DENY))]) == []
    legacy = Resource(guardrails.CLUSTER, "c", proxy({"datapathProvider": "LEGACY_DATAPATH"}))
    assert guardrails.security_without_dataplane_v2([SECURITY, legacy])


def test_pack_wires_every_validator_as_mandatory():
    tree = ast.parse((PACK / "__main__.py").read_text())
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "guardrails"}
    rules = {"legacy_network_policy_addon", "unpinned_kyverno", "security_without_dataplane_v2", "missing_default_deny"}
    assert rules <= used, f"validators not wired into the pack: {rules - used}"
    source = (PACK / "__main__.py").read_text()
    assert "EnforcementLevel.MANDATORY" in source
    (pack,) = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "PolicyPack"]
    kwargs = {k.arg: k.value for k in pack.keywords}
    assert ast.literal_eval(kwargs["name"]) == "llm-platform-guardrails"
    assert ast.unparse(kwargs["enforcement_level"]) == "EnforcementLevel.MANDATORY"
    kinds = [getattr(p.func, "id", "") for p in kwargs["policies"].elts]
    assert len(kinds) == 4 and set(kinds) == {"ResourceValidationPolicy", "StackValidationPolicy"}
    requirements = (PACK / "requirements.txt").read_text().split()
    assert all("==" in line for line in requirements) and any(r.startswith("pulumi-policy==") for r in requirements)
    assert "runtime:" in (PACK / "PulumiPolicy.yaml").read_text()


def test_pack_policies_report_through_the_engine_callbacks(monkeypatch):
    """Run __main__.py with PolicyPack replaced by a recorder (the real one blocks waiting for the engine),
    then drive each policy's validate callback the way the analyzer does."""
    import runpy
    from types import SimpleNamespace

    import pulumi_policy

    captured = {}
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: captured.update(kwargs))
    monkeypatch.syspath_prepend(str(PACK))
    runpy.run_path(str(PACK / "__main__.py"), run_name="__main__")
    assert captured["name"] == "llm-platform-guardrails"
    assert captured["enforcement_level"] == pulumi_policy.EnforcementLevel.MANDATORY
    policies = {p.name: p for p in captured["policies"]}

    def violations(policy, args):
        found = []
        policy.validate(args, lambda message, urn=None: found.append(message))
        return found

    def resource_args(typ, name, props):
        return SimpleNamespace(resource_type=typ, name=name, props=props, urn=f"urn:pulumi:prod::llm-platform::{typ}::{name}")

    def stack_args(*resources):
        return SimpleNamespace(resources=[SimpleNamespace(resource_type=t, name=n, props=p, urn="") for t, n, p in resources])

    addon = policies["no-legacy-network-policy-addon"]
    assert violations(addon, resource_args(guardrails.CLUSTER, "c", {"networkPolicy": {"enabled": True}}))
    assert violations(addon, resource_args(guardrails.CLUSTER, "c", CLUSTER_OK)) == []
    pinned = policies["kyverno-chart-pinned"]
    assert violations(pinned, resource_args(guardrails.HELM_TYPES[0], "kyverno", {"chart": "kyverno", "version": "^3.8"}))
    assert violations(pinned, resource_args(guardrails.HELM_TYPES[0], "kyverno", {"chart": "kyverno", "version": "3.8.1"})) == []
    dpv2 = policies["security-requires-dataplane-v2"]
    legacy = (guardrails.CLUSTER, "c", {"datapathProvider": "LEGACY_DATAPATH"})
    assert violations(dpv2, stack_args(("llm-platform:security:Security", "s", {}), legacy))
    assert violations(dpv2, stack_args(legacy)) == []
    deny = policies["network-policies-default-deny"]
    assert violations(deny, stack_args((guardrails.NETWORK_POLICY, "a", ALLOW)))
    assert violations(deny, stack_args((guardrails.NETWORK_POLICY, "a", ALLOW), (guardrails.NETWORK_POLICY, "d", DENY))) == []


# --- The pack loads the way the Pulumi CLI loads a local `--policy-pack` ----------------------------------
#
# pulumi/pulumi, sdk/go/common/resource/plugin/analyzer_plugin.go (NewPolicyAnalyzer): for a `python` runtime
# the CLI reads <pack>/PulumiPolicy.yaml and starts the plugin `pulumi-analyzer-policy-python` with the
# working directory set to the pack, the arguments `<engine-address> . -virtualenv=<options.virtualenv>`,
# and the environment plus PULUMI_CONFIG / PULUMI_PROJECT / PULUMI_STACK / PULUMI_DRY_RUN (constructEnv).
# That plugin (sdk/python/dist/pulumi-analyzer-policy-python) makes the virtualenv path absolute against the
# pack directory, fails with `"<venv>" doesn't appear to be a virtual environment` when <venv>/bin/python
# is missing, else runs `<venv>/bin/python -u -m pulumi.policy <engine-address> .`; pulumi.policy runs the
# pack's __main__.py, whose PolicyPack(...) serves the Analyzer gRPC service and prints its port on the
# first stdout line, which the CLI dials (GetAnalyzerInfo, ConfigureStack, Analyze, AnalyzeStack).
# Nothing installs a local pack's dependencies (only packs published to Pulumi Cloud are installed), so
# `make pack` builds the venv and every workflow runs it before a `--policy-pack`.

import json as _json
import os
import subprocess


def _pack_runtime():
    project = yaml.safe_load((PACK / "PulumiPolicy.yaml").read_text())
    runtime = project["runtime"]
    name = runtime if isinstance(runtime, str) else runtime["name"]
    options = {} if isinstance(runtime, str) else (runtime.get("options") or {})
    return name, options


def _pack_interpreter():
    """The interpreter pulumi-analyzer-policy-python would run, or a skip/fail saying how to build it."""
    name, options = _pack_runtime()
    assert name == "python", f"PulumiPolicy.yaml: runtime {name!r}; this loader models the python plugin"
    venv = options.get("virtualenv")
    assert venv, "PulumiPolicy.yaml: runtime.options.virtualenv is required (the CLI installs nothing for a local pack)"
    python = (PACK / venv).resolve() / "bin" / "python"
    if not python.is_file():
        message = (f'"{(PACK / venv).resolve()}" doesn\'t appear to be a virtual environment '
                   "(what the CLI reports): run `make pack`")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


def _cli_env(python, config=None):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(PULUMI_CONFIG=_json.dumps(config or {"llm-platform:security": "true"}), PULUMI_PROJECT="llm-platform",
               PULUMI_STACK="prod", PULUMI_DRY_RUN="true")
    return env


def test_pack_venv_has_the_pinned_dependencies_and_nothing_from_the_test_venv():
    python = _pack_interpreter()
    probe = ("import sys, json, importlib.metadata as m, pulumi_policy, pulumi; "
             "print(json.dumps({'prefix': sys.prefix, 'policy': pulumi_policy.__file__, "
             "'versions': {d: m.version(d) for d in ('pulumi', 'pulumi-policy')}}))")
    out = subprocess.run([str(python), "-c", probe], cwd=PACK, env=_cli_env(python), capture_output=True,
                         text=True, check=True).stdout
    info = _json.loads(out)
    venv = python.parent.parent
    assert pathlib.Path(info["prefix"]).resolve() == venv, f"the pack runs in {info['prefix']}, not its own venv {venv}"
    assert pathlib.Path(info["policy"]).resolve().is_relative_to(venv), "pulumi_policy must come from the pack's venv"
    pins = dict(line.split("==") for line in (PACK / "requirements.txt").read_text().split())
    assert info["versions"] == {k: pins[k] for k in ("pulumi", "pulumi-policy")}, \
        f"pack venv {info['versions']} drifted from policies/crossguard/requirements.txt {pins}: rerun `make pack`"


@pytest.fixture()
def served_pack():
    yield from _serve_pack()


def _serve_pack(config=None):
    """Start the pack exactly as the CLI's python policy plugin does and dial the port it prints.

    `config` is the stack config the engine passes in PULUMI_CONFIG (pkg/resource/plugin/analyzer_plugin.go
    in pulumi v3.274.0 hands the decrypted stack config to every policy pack)."""
    import grpc
    from pulumi.runtime.proto import analyzer_pb2_grpc

    python = _pack_interpreter()
    # The engine address is only used by the pack for logging through the engine; nothing listens here.
    proc = subprocess.Popen([str(python), "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."], cwd=PACK,
                            env=_cli_env(python, config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            proc.kill()
            pytest.fail(f"the pack did not print its gRPC port (stdout {line!r}); stderr:\n{proc.stderr.read()}")
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.kill()
        proc.wait()


def _struct(props):
    from google.protobuf import struct_pb2

    s = struct_pb2.Struct()
    s.update(props)
    return s


def test_pack_serves_its_mandatory_policies_like_the_cli_sees_them(served_pack):
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import analyzer_pb2

    info = served_pack.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "llm-platform-guardrails"
    names = {p.name: p.enforcementLevel for p in info.policies}
    assert set(names) == {"security-requires-dataplane-v2", "no-legacy-network-policy-addon",
                          "kyverno-chart-pinned", "network-policies-default-deny"}, names
    assert set(names.values()) == {analyzer_pb2.MANDATORY}, f"every policy must be mandatory: {names}"
    served_pack.ConfigureStack(analyzer_pb2.AnalyzerStackConfigureRequest(stack="prod", project="llm-platform"))


def test_pack_reports_violations_over_grpc(served_pack):
    from pulumi.runtime.proto import analyzer_pb2

    cluster_urn = "urn:pulumi:prod::llm-platform::gcp:container/cluster:Cluster::llm-prod"
    bad = served_pack.Analyze(analyzer_pb2.AnalyzeRequest(
        type=guardrails.CLUSTER, name="llm-prod", urn=cluster_urn,
        properties=_struct({**CLUSTER_OK, "addonsConfig": {"networkPolicyConfig": {"disabled": False}}})))
    assert [d.policyName for d in bad.diagnostics] == ["no-legacy-network-policy-addon"], bad
    assert bad.diagnostics[0].enforcementLevel == analyzer_pb2.MANDATORY
    ok = served_pack.Analyze(analyzer_pb2.AnalyzeRequest(type=guardrails.CLUSTER, name="llm-prod", urn=cluster_urn,
                                                         properties=_struct(CLUSTER_OK)))
    assert list(ok.diagnostics) == []
    security = analyzer_pb2.AnalyzerResource(type="llm-platform:security:Security", name="security",
                                             urn="urn:pulumi:prod::llm-platform::llm-platform:security:Security::security",
                                             properties=_struct({}))
    legacy = analyzer_pb2.AnalyzerResource(type=guardrails.CLUSTER, name="llm-prod", urn=cluster_urn,
                                           properties=_struct({"datapathProvider": "LEGACY_DATAPATH"}))
    stack = served_pack.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[security, legacy]))
    assert "security-requires-dataplane-v2" in [d.policyName for d in stack.diagnostics], stack


def test_make_pack_builds_the_venv_pulumipolicy_yaml_names():
    _, options = _pack_runtime()
    dry = subprocess.run(["make", "-n", "-B", "pack"], cwd=PACK.parent.parent, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    expected = f"{PACK.relative_to(PACK.parent.parent)}/{options['virtualenv']}"
    assert f"-m venv {expected}" in dry.stdout, f"`make pack` must create {expected}:\n{dry.stdout}"
    assert f"{expected}/bin/python -m pip install" in dry.stdout and "policies/crossguard/requirements.txt" in dry.stdout


def test_the_served_pack_checks_the_stacks_own_protected_namespaces():
    """Through the real pack process: the stack config the engine passes names ml-serving as protected."""
    from pulumi.runtime.proto import analyzer_pb2

    config = {"llm-platform:security": "true",
              "llm-platform:networkPolicy": _json.dumps({"protectedNamespaces": ["ml-serving"]})}
    pack = _serve_pack(config)
    stub = next(pack)
    try:
        security = analyzer_pb2.AnalyzerResource(
            type="llm-platform:security:Security", name="security",
            urn="urn:pulumi:prod::llm-platform::llm-platform:security:Security::security", properties=_struct({}))
        allow = analyzer_pb2.AnalyzerResource(
            type=guardrails.NETWORK_POLICY, name="ml-allow", urn="urn:pulumi:prod::llm-platform::np::ml-allow",
            properties=_struct({**ALLOW, "metadata": {"name": "a", "namespace": "ml-serving"}}))
        stack = stub.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[security, allow]))
        messages = [d.message for d in stack.diagnostics if d.policyName == "network-policies-default-deny"]
        assert len(messages) == 1 and "namespace ml-serving" in messages[0], stack
    finally:
        pack.close()
