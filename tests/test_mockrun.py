"""The mock engine (tools/mockrun.py) answers as the SDK's own mock monitor would: what the program reads
back as outputs must not depend on the shortcuts the recording monitor takes for speed (echoing the
request's wire form), and what it records must keep what the program asked for, unknowns included."""

import asyncio
import json
import subprocess
import sys

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s
from pulumi.runtime import mocks as pulumi_mocks

from tools import mockrun

LABELS = {"a": "1", "pod-security.kubernetes.io/enforce": "restricted"}


def _unknown() -> pulumi.Output:
    loop = asyncio.get_event_loop()
    known, value = loop.create_future(), loop.create_future()
    known.set_result(False)
    value.set_result(None)
    return pulumi.Output(set(), value, known)


def _program() -> dict[str, pulumi.Output]:
    ns = k8s.core.v1.Namespace("echo", metadata={"name": "echo", "labels": LABELS})
    partly_unknown = k8s.core.v1.Namespace("unknown", metadata={"name": "unknown", "labels": {"team": _unknown()}})
    account = gcp.serviceaccount.Account("nodes", account_id="llm-nodes", display_name="nodes")
    return {
        "echo.metadata": ns.metadata,
        "echo.kind": ns.kind,
        "unknown.metadata": partly_unknown.metadata,
        "account.email": account.email,
        "account.display_name": account.display_name,
    }


def _outputs(monitor_class) -> tuple[dict, object]:
    """Run `_program` with :class:`mockrun.Mocks` behind `monitor_class`; its resolved outputs and the monitor."""
    mocks = mockrun.Mocks()
    monitor = monitor_class(mocks)
    mockrun._fresh_engine()
    pulumi.runtime.set_mocks(mocks, project=mockrun.PROJECT, stack="unit", monitor=monitor)
    got: dict = {}

    @pulumi.runtime.test
    def program():
        outs = _program()
        return pulumi.Output.all(*outs.values()).apply(lambda values: got.update(zip(outs, values, strict=True)))

    program()
    return got, monitor


def test_recording_monitor_gives_the_program_what_the_sdk_monitor_gives():
    ours, monitor = _outputs(mockrun._RecordingMonitor)
    sdk, _ = _outputs(pulumi_mocks.MockMonitor)
    assert ours == sdk, f"outputs differ from the SDK's mock monitor:\n ours {ours}\n sdk  {sdk}"
    assert ours["echo.metadata"] == {"name": "echo", "labels": LABELS}, f"Namespace echo: outputs {ours}"
    assert ours["account.email"] == mockrun.MOCK_OUTPUTS["gcp:serviceaccount/account:Account"]["email"], (
        "Account nodes: email must come from MOCK_OUTPUTS"
    )
    assert ours["account.display_name"] == "nodes", "Account nodes: its inputs stay outputs next to MOCK_OUTPUTS"
    records = {r.name: r for r in monitor.records}
    assert records["echo"].inputs["metadata"] == {"name": "echo", "labels": LABELS}, records["echo"].inputs
    assert records["unknown"].inputs["metadata"]["labels"]["team"] == mockrun.UNKNOWN, (
        f"Namespace unknown: an unknown input must be recorded as {mockrun.UNKNOWN}, got {records['unknown'].inputs}"
    )


_REFERENCE_PROGRAM = """
import faulthandler, json, sys
faulthandler.dump_traceback_later(120, exit=True)  # a pending read would otherwise hang the run forever
import pulumi, pulumi_command as command, pulumi_kubernetes as k8s
from pulumi.runtime import mocks as pulumi_mocks
from tools import mockrun

monitor_class = mockrun._RecordingMonitor if sys.argv[1] == "ours" else pulumi_mocks.MockMonitor
mocks = mockrun.Mocks()
mockrun._fresh_engine()
pulumi.runtime.set_mocks(mocks, project=mockrun.PROJECT, stack="unit", monitor=monitor_class(mocks))
got = {}

@pulumi.runtime.test
def program():
    ns = k8s.core.v1.Namespace("ns", metadata={"name": "ns"})
    cleanup = command.local.Command("cleanup", create="true", triggers=[ns])
    return pulumi.Output.all(cleanup.create, cleanup.triggers.apply(len)).apply(
        lambda v: got.update(create=v[0], triggers=v[1]))

program()
print(json.dumps(got))
"""


def test_a_resource_passed_as_an_input_completes_as_with_the_sdk_monitor():
    """A resource given as an input (a Command's `triggers`) arrives as a reference, which the engine reads
    back; the recording monitor must let that read finish exactly as the SDK's monitor does."""
    results = {}
    for which in ("ours", "sdk"):
        proc = subprocess.run([sys.executable, "-c", _REFERENCE_PROGRAM, which], cwd=mockrun.ROOT,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{which} monitor: a resource reference input broke the run:\n{proc.stderr[-2000:]}"
        results[which] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results["ours"] == results["sdk"] == {"create": "true", "triggers": 1}, results


def test_a_later_run_reuses_the_crd_wire_forms_and_records_the_same(monkeypatch):
    """The CRDs' wire forms and records are kept between runs of a process (tools/mockrun.py): a later run
    records exactly what a run that computed them records, and a changed CRD is computed afresh."""
    from components import kyverno

    config = mockrun.stack_config("dev")
    # Empty caches for this test; the process's own come back after it.
    monkeypatch.setattr(mockrun, "_WIRE_CACHE", {})
    monkeypatch.setattr(mockrun, "_READ_CACHE", {})
    first = mockrun.run("dev", config)
    crds = [r for r in first if r.type in mockrun.SMALL_OUTPUTS]
    assert len(crds) == 22 and len(mockrun._WIRE_CACHE) == 22 and len(mockrun._READ_CACHE) == 22
    def by_urn(records: list) -> list:  # registration order follows dependency resolution
        return sorted(records, key=lambda r: r.urn)

    second = mockrun.run("dev", config)
    assert by_urn(second) == by_urn(first), "a run from the caches records what the computing run recorded"
    assert len(mockrun._READ_CACHE) == 22, "the same request is the same key"
    # Each run gets its own records: a caller changing one changes no later run.
    next(r for r in second if r.type in mockrun.SMALL_OUTPUTS).inputs["spec"]["versions"] = []
    assert by_urn(mockrun.run("dev", config)) == by_urn(first)

    original = kyverno.crd_manifests

    def changed() -> tuple:
        out = list(original())
        out[0] = {**out[0], "metadata": {**out[0]["metadata"], "labels": {"changed": "yes"}}}
        return tuple(out)

    monkeypatch.setattr(kyverno, "crd_manifests", changed)
    again = mockrun.run("dev", config)
    assert len(mockrun._WIRE_CACHE) == 23, "the changed CRD is serialised afresh"
    labelled = [r for r in again if r.type in mockrun.SMALL_OUTPUTS and r.inputs["metadata"].get("labels") == {"changed": "yes"}]
    assert len(labelled) == 1
