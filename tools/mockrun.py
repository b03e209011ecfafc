"""Run the real Pulumi program under Pulumi mocks, recording every registration.

Used by the offline render (`make synth`) and by the tests: no Pulumi CLI, no cloud
credentials, no cluster. What is recorded is exactly what the program asks the engine to
create: type, name, inputs, and the options that matter for safety (parent, explicit and
implicit dependencies, protect, retainOnDelete, provider).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import json
import pathlib
import pickle
import runpy
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
from google.protobuf import struct_pb2
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import resource as pulumi_resource_runtime
from pulumi.runtime import rpc as pulumi_rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from components import yaml_io

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROJECT = "llm-platform"

# Values a real deployment gets back from the cloud; only what the program reads. In preview
# mode none of them is returned: as on a brand-new stack, the engine does not know them yet.
MOCK_OUTPUTS: dict[str, dict[str, Any]] = {
    "gcp:container/cluster:Cluster": {
        "endpoint": "203.0.113.10",
        "masterAuth": {"clusterCaCertificate": "TU9DSy1DQS1DRVJUSUZJQ0FURQ=="},
        "controlPlaneEndpointsConfig": {
            "dnsEndpointConfig": {"endpoint": "gke-0123456789abcdef0123456789abcdef-000000000000.europe-west4.gke.goog"}
        },
    },
    "gcp:serviceaccount/account:Account": {
        "email": "llm-nodes@project.iam.gserviceaccount.com",
        "member": "serviceAccount:llm-nodes@project.iam.gserviceaccount.com",
    },
}

# Resources whose outputs the program never reads, and whose inputs are large: the 22 Kyverno CRDs are
# 2.9 MB of schema. Echoing them back as outputs made the SDK serialise and deserialise them twice more;
# they get back only what identifies them.
SMALL_OUTPUTS = {"kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"}

# Their wire form is the same in every run of a process with the same inputs (the tests run the program about
# ten times per worker), so a run that goes on in its process (not `make synth`'s one-shot run) keeps it, keyed
# by the inputs' JSON: plain values only (no Output, no resource reference), hence no dependencies, so a later
# run sends the engine byte-identical requests (tests/test_mockrun.py compares them).
_WIRE_CACHE: dict[str, bytes] = {}
# ...and the monitor's side: such a request's deserialised inputs and its record (pickled: every run gets its
# own copy, so a caller changing a record changes no later run), keyed by its bytes (deterministic order).
_READ_CACHE: dict[bytes, tuple[Any, bytes]] = {}
_WIRE_CACHE_ON = [False]

UNKNOWN = "<unknown>"
"""How a value the engine does not know yet (preview of a new stack) appears in recorded inputs."""


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class Registration:
    """One resource the program registered."""

    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    parent: str = ""
    dependencies: list[str] = field(default_factory=list)
    protect: bool = False
    retain_on_delete: bool = False
    provider: str = ""
    custom: bool = True

    @property
    def is_kubernetes_object(self) -> bool:
        return (
            self.custom
            and self.type.startswith("kubernetes:")
            and not self.type.startswith("kubernetes:helm.sh/")
            and "apiVersion" in self.inputs
            and "kind" in self.inputs
        )


class Mocks(pulumi.runtime.Mocks):
    """The project's one set of Pulumi mocks: the render, the program tests and the component tests use it.

    Up: every resource gets `<name>-id` and its inputs back, deep-merged with :data:`MOCK_OUTPUTS`
    (:data:`SMALL_OUTPUTS`: only apiVersion, kind and metadata).
    Preview (of a brand-new stack): only the inputs are known.
    """

    def __init__(self, preview: bool = False):
        super().__init__()
        self.preview = preview

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        resource_id = "" if self.preview else f"{args.name}-id"
        if args.typ in SMALL_OUTPUTS:
            return resource_id, {k: args.inputs[k] for k in ("apiVersion", "kind", "metadata") if k in args.inputs}
        if self.preview:
            # A create in preview: only the inputs are known; ids and computed outputs are not.
            return "", args.inputs
        if args.typ not in MOCK_OUTPUTS:
            # The inputs object itself: the monitor then echoes the request's wire form (see _RecordingMonitor).
            return resource_id, args.inputs
        return resource_id, _merge(dict(args.inputs), MOCK_OUTPUTS[args.typ])

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


_UNKNOWN_WIRE = pulumi.runtime.rpc.UNKNOWN.encode()
_RESOURCE_WIRE = pulumi_rpc._special_resource_sig.encode()


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, recording each registration. ``RegisterResource`` is the SDK's own
    (pulumi/runtime/mocks.py) with two differences: the inputs deserialised for the mocks are also what is
    recorded, and when the mocks return those very inputs as the state (every type but :data:`MOCK_OUTPUTS`)
    the response carries the request's own wire form instead of serialising the same values back, unless
    the request holds an unknown (up mode) or a resource reference."""

    def __init__(self, mocks: Mocks):
        super().__init__(mocks)
        self.mocks: Mocks = mocks
        self.records: list[Registration] = []

    def RegisterResource(self, request):
        if request.type == "pulumi:pulumi:Stack":
            return super().RegisterResource(request)
        urn = self.make_urn(request.parent, request.type, request.name)
        _ensure_event_loop()  # as the SDK: deserialising resource references needs a loop on this thread
        wire = request.object
        raw = wire.SerializeToString(deterministic=True)
        # In up mode deserialising turns an unknown into None (as the SDK's monitor does for the mocks); such
        # requests are rare, and they are deserialised once more, keeping unknowns, for the record.
        unknowns = not self.mocks.preview and _UNKNOWN_WIRE in raw
        # A resource reference deserialises into a read of that resource, a task on this thread's loop that
        # only serialising the state back (which runs the loop) completes: such requests are never echoed.
        references = _RESOURCE_WIRE in raw
        cacheable = _WIRE_CACHE_ON[0] and request.type in SMALL_OUTPUTS and not unknowns and not references
        if cacheable and raw in _READ_CACHE:
            inputs, pickled = _READ_CACHE[raw]
            plain = pickle.loads(pickled)
        else:
            inputs = pulumi_rpc.deserialize_properties(wire)
            plain = None
        resource_id, state = self.mocks.new_resource(
            pulumi.runtime.MockResourceArgs(
                typ=request.type,
                name=request.name,
                inputs=inputs,
                provider=request.provider,
                resource_id=request.importId,
                custom=request.custom or False,
                transforms=pulumi_mocks._resolve_callbacks(request.transforms),
            )
        )
        echo = state is inputs and not unknowns and not references
        obj = wire if echo else _sync_await(pulumi_rpc.serialize_properties(state, {}))
        self.resources[urn] = pulumi_mocks.MockMonitor.ResourceRegistration(urn, resource_id, state)
        if plain is None:
            recorded = pulumi_rpc.deserialize_properties(wire, keep_unknowns=True) if unknowns else inputs
            plain = _plain(recorded)
            if cacheable:
                _READ_CACHE[raw] = (inputs, pickle.dumps(plain, protocol=pickle.HIGHEST_PROTOCOL))
        self.records.append(
            Registration(
                type=request.type,
                name=request.name,
                urn=urn,
                inputs=plain,
                parent=request.parent,
                dependencies=sorted(request.dependencies),
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                provider=request.provider,
                custom=bool(request.custom),
            )
        )
        return resource_pb2.RegisterResourceResponse(urn=urn, id=resource_id, object=obj)


def _plain(value: Any) -> Any:
    """Strip Pulumi's wire wrappers (secrets, unknowns) into plain data.

    Copies only the dicts and lists that hold a wrapper (or a tuple): the rest is the engine's freshly
    deserialised copy, recorded as is rather than duplicated (the CRD schemas are most of a render's data)."""
    if isinstance(value, dict):
        if value.get("4dabf18193072939515e22adb298388d") == "1b47061264138c4ac30d75fd1eb44270":
            return _plain(value.get("value"))
        out: Optional[dict[str, Any]] = None
        for k, v in value.items():
            p = _plain(v)
            if p is not v:
                if out is None:
                    out = dict(value)
                out[k] = p
        return value if out is None else out
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        if isinstance(value, list) and all(p is v for p, v in zip(items, value, strict=True)):
            return value
        return items
    if value == pulumi.runtime.rpc.UNKNOWN or type(value).__name__ == "Unknown":
        return UNKNOWN
    return value


def unknown_paths(value: Any, path: str = "") -> list[str]:
    """Where in recorded inputs a value is unknown (preview), as dotted paths."""
    if value == UNKNOWN:
        return [path or "."]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in unknown_paths(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in unknown_paths(v, f"{path}[{i}]")]
    return []


def stack_config(
    stack: str, overrides: Optional[dict[str, Any]] = None, stack_file: Optional[pathlib.Path] = None
) -> dict[str, str]:
    """Pulumi.<stack>.yaml's `config:` as the engine passes it (strings; objects as JSON)."""
    path = pathlib.Path(stack_file) if stack_file else ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no stack file {path.name}; stacks: {', '.join(available_stacks())}")
    with path.open(encoding="utf-8") as fh:
        raw = (yaml_io.load(fh) or {}).get("config", {}) or {}
    raw.update(overrides or {})
    out = {}
    for key, value in raw.items():
        out[key] = value if isinstance(value, str) else json.dumps(value)
    return out


def available_stacks() -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))


def install(stack: str = "unit", preview: bool = False) -> Mocks:
    """Set :class:`Mocks` as the engine for components built directly in a test (no recording)."""
    mocks = Mocks(preview=preview)
    _fresh_engine()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview)
    return mocks


def _fresh_engine() -> None:
    # set_mocks keeps an existing root Stack resource: without this, a run in a process that ran
    # another stack before (the tests) would parent everything to that stack's URN.
    pulumi_settings.ROOT.set(None)
    # The SDK walks the Python stack on every registration to report source positions to the engine;
    # the mock monitor records none of it, and at 1,000 tenants the walk is most of the run.
    if hasattr(pulumi_resource_runtime, "_get_stack_trace"):
        pulumi_resource_runtime._get_stack_trace = _no_stack_trace
    # In `up` mode the SDK fills every output the engine did not return from the resource's serialised
    # inputs: deserialised and translated into output types once more. For :data:`SMALL_OUTPUTS` (the CRD
    # schemas, never read as outputs) the mocks return only what identifies the object on purpose; the
    # recorder has the inputs already. Guarded by type: every other resource resolves as the SDK does.
    if not getattr(pulumi_rpc.resolve_outputs, "_small_outputs_only", False):
        pulumi_rpc.resolve_outputs = _small_outputs_only(pulumi_rpc.resolve_outputs)
    if not getattr(pulumi_rpc.serialize_properties, "_wire_cache", False):
        pulumi_rpc.serialize_properties = _cached_wire(pulumi_rpc.serialize_properties)


def _cached_wire(serialize: Any) -> Any:
    async def wrapper(inputs: Any, property_deps: dict, resource_obj: Any = None, *args: Any, **kwargs: Any) -> Any:
        if not _WIRE_CACHE_ON[0] or getattr(resource_obj, "_type", None) not in SMALL_OUTPUTS:
            return await serialize(inputs, property_deps, resource_obj, *args, **kwargs)
        try:
            key = json.dumps(inputs, sort_keys=True)
        except (TypeError, ValueError):  # an Output or a resource among the inputs: not a plain value
            return await serialize(inputs, property_deps, resource_obj, *args, **kwargs)
        struct = struct_pb2.Struct()
        if key in _WIRE_CACHE:
            struct.ParseFromString(_WIRE_CACHE[key])
            property_deps.update({name: [] for name in struct.fields})
            return struct
        struct = await serialize(inputs, property_deps, resource_obj, *args, **kwargs)
        if not any(property_deps.values()) and set(property_deps) == set(struct.fields):
            _WIRE_CACHE[key] = struct.SerializeToString()
        return struct

    wrapper._wire_cache = True  # type: ignore[attr-defined]
    return wrapper


def _small_outputs_only(resolve_outputs: Any) -> Any:
    def wrapper(res: Any, serialized_props: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(res, "_type", None) in SMALL_OUTPUTS:
            serialized_props = struct_pb2.Struct()
        return resolve_outputs(res, serialized_props, *args, **kwargs)

    wrapper._small_outputs_only = True  # type: ignore[attr-defined]
    return wrapper


def _no_stack_trace() -> Any:
    from pulumi.runtime.proto import source_pb2

    return source_pb2.StackTrace()


def _one_monitor_thread() -> None:
    # The SDK sends each monitor call to the event loop's default executor (up to cores + 4 threads). The
    # mock monitor is Python under the GIL, so the threads add no speed, but each gets its own malloc
    # arena, holding the large CRD messages apart (several MiB of peak RSS): one thread does the same work.
    loop = asyncio.get_event_loop()
    if not getattr(loop, "_llm_platform_one_thread", False):
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mock-monitor"))
        setattr(loop, "_llm_platform_one_thread", True)  # noqa: B010 (an attribute asyncio does not declare)


_LAST: list[_RecordingMonitor] = []


def last_records() -> list[Registration]:
    """What the most recent run registered before it raised (a run that returns hands its records to its
    caller and keeps none)."""
    return list(_LAST[-1].records) if _LAST else []


def run(stack: str, config: dict[str, str], preview: bool = False, one_shot: bool = False) -> list[Registration]:
    """Run __main__.py under mocks for `stack` with raw `config`; return what it registered.

    ``preview=True`` runs it as ``pulumi preview`` of a brand-new stack: every id and computed
    output (cluster endpoint, CA, DNS endpoint, service account email, hence the provider's
    kubeconfig) is unknown; recorded inputs show them as :data:`UNKNOWN`. ``one_shot=True`` is for a process
    that exits soon after (the `make synth` command): the full garbage collection at the end is skipped and
    everything the run allocated stays frozen, so later collections never walk it again (nor does the
    interpreter's exit). A process that goes on (the tests) must leave it False.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    mocks = Mocks(preview=preview)
    monitor = _RecordingMonitor(mocks)
    _LAST[:] = [monitor]
    pulumi.runtime.set_all_config(config)
    _fresh_engine()
    _WIRE_CACHE_ON[0] = not one_shot
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    # The run builds a few million long-lived objects (the CRD schemas as Inputs, protobuf Structs and
    # recorded dicts) while the SDK allocates asyncio tasks and Outputs by the thousand: the cyclic
    # collector's full passes kept re-walking the whole heap as it grew (a third of a render). It is
    # paused for the run and runs once at the end, so the run's cyclic garbage is still freed. What existed
    # before the run is set aside (frozen) for that pass, which walks only what the run allocated; it joins
    # the oldest generation again afterwards.
    was_enabled = gc.isenabled()
    gc.disable()
    gc.freeze()
    _one_monitor_thread()
    try:
        program()
        # The engine's settings keep the monitor until the next run: it lets go of what it recorded (the
        # caller's now) and of the states the mocks returned, so the caller alone decides how long they live.
        records, monitor.records = monitor.records, []
        monitor.resources.clear()
        _LAST.clear()
    finally:
        if was_enabled:
            gc.enable()
        if not one_shot:
            gc.collect()
            gc.unfreeze()
        else:
            # One-shot process: what the run built lives until exit, so it stays out of every later collection
            # (a full pass over it costs 0.1-0.3 s, and the render's own allocations trigger several).
            gc.freeze()
    return records


def run_stack(
    stack: str,
    overrides: Optional[dict[str, Any]] = None,
    stack_file: Optional[pathlib.Path] = None,
    preview: bool = False,
) -> list[Registration]:
    """Run the program with Pulumi.<stack>.yaml plus `overrides` (``{"llm-platform:key": value}``)."""
    return run(stack, stack_config(stack, overrides, stack_file), preview=preview)
