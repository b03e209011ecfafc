"""The small Kubernetes client `make e2e` talks to the local API server with (tools/e2e.py).

Plain REST over the official client's connection pool (kubeconfig, client certificates): a request never raises
on an HTTP error status, it returns it, with the body and the `Warning` headers (Pod Security's `warn` mode
answers there). Kinds are resolved through the API server's own discovery, never from a table of ours.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional
from urllib.parse import urlencode

_WARNING = re.compile(r'\d{3} \S+ "((?:[^"\\]|\\.)*)"')


@dataclass
class Response:
    """One answer of the API server."""

    status: int
    body: Any
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        """The Status message of an error (or the raw body)."""
        if isinstance(self.body, dict):
            return str(self.body.get("message") or self.body)
        return str(self.body)


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API."""

    prefix: str
    """`/api/v1` or `/apis/<group>/<version>`."""
    plural: str
    namespaced: bool

    def path(self, namespace: Optional[str] = None, name: Optional[str] = None, subresource: str = "") -> str:
        out = self.prefix
        if self.namespaced and namespace:
            out += f"/namespaces/{namespace}"
        out += f"/{self.plural}"
        if name:
            out += f"/{name}"
        if subresource:
            out += f"/{subresource}"
        return out


class Kube:
    """REST access to one cluster, as the kubeconfig's user (optionally impersonating another)."""

    def __init__(self, kubeconfig: str, context: Optional[str] = None):
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        self._api = client.ApiClient(configuration)
        self.host = configuration.host
        self._pool = self._api.rest_client.pool_manager
        self._discovery: dict[str, list[dict[str, Any]]] = {}

    def close(self) -> None:
        self._api.close()

    def request(self, method: str, path: str, body: Any = None, query: Optional[dict[str, str]] = None,
                headers: Optional[dict[str, str]] = None, content_type: str = "application/json",
                timeout: float = 60.0) -> Response:
        url = self.host + path + (("?" + urlencode(query)) if query else "")
        hdrs = {"Accept": "application/json", **(headers or {})}
        data = None
        if body is not None:
            hdrs["Content-Type"] = content_type
            data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        r = self._pool.request(method, url, body=data, headers=hdrs, timeout=timeout, preload_content=True)
        try:
            parsed = json.loads(r.data) if r.data else None
        except ValueError:
            parsed = r.data.decode(errors="replace")
        warnings = []
        for value in r.headers.getlist("Warning"):
            warnings += [w.replace('\\"', '"').replace("\\\\", "\\") for w in _WARNING.findall(value)]
        return Response(r.status, parsed, warnings)

    # --------------------------------------------------------------- discovery

    def _resources(self, api_version: str) -> list[dict[str, Any]]:
        if api_version not in self._discovery:
            prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            r = self.request("GET", prefix)
            self._discovery[api_version] = r.body.get("resources", []) if r.ok else []
        return self._discovery[api_version]

    def forget_discovery(self) -> None:
        """After CRDs come or go."""
        self._discovery.clear()

    def resource(self, api_version: str, kind: str) -> Optional[Resource]:
        """The top-level resource of ``kind`` in ``api_version`` (None when the API server serves none)."""
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        for res in self._resources(api_version):
            if res.get("kind") == kind and "/" not in res["name"]:
                return Resource(prefix, res["name"], bool(res.get("namespaced")))
        return None

    def groups(self) -> list[tuple[str, list[str]]]:
        """(group, versions) for every API group, the core group first as ("", ["v1"])."""
        out: list[tuple[str, list[str]]] = [("", ["v1"])]
        r = self.request("GET", "/apis")
        for g in (r.body or {}).get("groups", []):
            out.append((g["name"], [v["version"] for v in g.get("versions", [])]))
        return out

    def find(self, group: str, version: str, kind: str, subresource: str = "") -> list[tuple[str, str, str, str, bool]]:
        """Kyverno's ``FindResources`` for a kind selector: (group, version, resource, subresource, namespaced)
        of every served resource matching it (``*`` matches any group or version)."""
        out = []
        for g, versions in self.groups():
            if group not in ("*", g):
                continue
            for v in versions:
                if version not in ("*", v):
                    continue
                api_version = f"{g}/{v}" if g else v
                for res in self._resources(api_version):
                    name = res["name"]
                    parent, _, sub = name.partition("/")
                    if subresource:
                        if not sub or (subresource != "*" and sub != subresource):
                            continue
                        # a subresource's `kind` is its payload's kind; Kyverno matches the parent's
                        parent_kind = next((x.get("kind") for x in self._resources(api_version) if x["name"] == parent), None)
                        if kind != "*" and parent_kind != kind:
                            continue
                    else:
                        if sub or (kind != "*" and res.get("kind") != kind):
                            continue
                    out.append((g, v, parent, sub, bool(res.get("namespaced"))))
        return out

    # --------------------------------------------------------------- objects

    def path_of(self, obj: dict[str, Any], name: bool = True, subresource: str = "") -> Optional[str]:
        res = self.resource(obj["apiVersion"], obj["kind"])
        if res is None:
            return None
        meta = obj.get("metadata") or {}
        return res.path(meta.get("namespace") or ("default" if res.namespaced else None),
                        meta.get("name") if name else None, subresource)

    def get(self, obj: dict[str, Any]) -> Response:
        path = self.path_of(obj)
        if path is None:
            return Response(404, {"message": f"the API server serves no {obj['kind']} in {obj['apiVersion']}"})
        return self.request("GET", path)

    def create(self, obj: dict[str, Any], dry_run: bool = False, as_user: Optional[str] = None,
               as_group: Optional[str] = None) -> Response:
        """Create (or only admit, ``dry_run``), optionally as ``as_user`` in ``as_group`` (impersonated)."""
        path = self.path_of(obj, name=False)
        if path is None:
            return Response(404, {"message": f"the API server serves no {obj['kind']} in {obj['apiVersion']}"})
        headers = {"Impersonate-User": as_user} if as_user else {}
        if as_user and as_group:
            headers["Impersonate-Group"] = as_group
        return self.request("POST", path, obj, query={"dryRun": "All"} if dry_run else None, headers=headers or None)

    def apply(self, obj: dict[str, Any], manager: str = "llm-platform-e2e") -> Response:
        """Server-side apply (force)."""
        path = self.path_of(obj)
        if path is None:
            return Response(404, {"message": f"the API server serves no {obj['kind']} in {obj['apiVersion']}"})
        return self.request("PATCH", path, obj, query={"fieldManager": manager, "force": "true"},
                            content_type="application/apply-patch+yaml")

    def delete(self, obj: dict[str, Any], wait: float = 0.0) -> Response:
        """Delete (background propagation); with ``wait``, until it is gone (or the time is up)."""
        path = self.path_of(obj)
        if path is None:
            return Response(404, {"message": "no such kind"})
        r = self.request("DELETE", path, {"propagationPolicy": "Background"})
        deadline = time.monotonic() + wait
        while wait and r.status != 404 and time.monotonic() < deadline:
            time.sleep(0.2)
            if self.request("GET", path).status == 404:
                return Response(200, r.body, r.warnings)
        return r

    def list(self, api_version: str, kind: str, namespace: Optional[str] = None,
             selector: Optional[str] = None) -> list[dict[str, Any]]:
        res = self.resource(api_version, kind)
        if res is None:
            return []
        r = self.request("GET", res.path(namespace), query={"labelSelector": selector} if selector else None)
        return list((r.body or {}).get("items", [])) if r.ok else []


# ------------------------------------------------------------------- comparing objects


def subset_differences(want: Any, have: Any, path: str = "") -> list[str]:
    """Where ``want`` (what we set) is not contained in ``have`` (the live object): every key of a map must be
    there with a contained value, lists must have the same length and contained elements, scalars must be equal."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return [f"{path or '.'}: expected an object, found {_short(have)}"]
        out = []
        for key, value in want.items():
            where = f"{path}.{key}" if path else key
            if key not in have:
                out.append(f"{where}: missing (want {_short(value)})")
            else:
                out += subset_differences(value, have[key], where)
        return out
    if isinstance(want, list):
        if not isinstance(have, list):
            return [f"{path}: expected a list, found {_short(have)}"]
        if len(want) != len(have):
            return [f"{path}: {len(want)} items wanted, {len(have)} live"]
        out = []
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            out += subset_differences(w, h, f"{path}[{i}]")
        return out
    if want != have and not _same_number(want, have):
        return [f"{path}: want {_short(want)}, live {_short(have)}"]
    return []


def _same_number(a: Any, b: Any) -> bool:
    return (isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool)
            and not isinstance(b, bool) and float(a) == float(b))


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def top_level_items(detail: str) -> list[str]:
    """Split Pod Security's aggregated detail (``reason (detail), reason (detail)``) at its top-level commas."""
    items, depth, current = [], 0, ""
    for ch in detail:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(current.strip())
            current = ""
            continue
        current += ch
    if current.strip():
        items.append(current.strip())
    return items


def psa_reasons(message: str) -> Optional[set[str]]:
    """The check reasons of a Pod Security message (``[would ]violate[s] PodSecurity "lvl:ver": ...``), or None."""
    m = re.search(r'violates? PodSecurity "[^"]*": (.*)$', message, re.DOTALL)
    if not m:
        return None
    return {item.split(" (", 1)[0].strip() for item in top_level_items(m.group(1))}


def names(items: Iterable[dict[str, Any]]) -> list[str]:
    return sorted(i["metadata"]["name"] for i in items)
