"""The pod-bearing kinds the guardrails check, and where each keeps its pod template: defined here once.

From `POD_TEMPLATE_KINDS` come the guardrail policies' match `kinds` and their `podSpec` / `podMeta` CEL
variables (autogen is off: one rule reads the pod template of every kind itself), the kinds
tools/guardrail_report.py evaluates, the template paths tools/pod_security.py reads, and the Kyverno kind and
pod template of SR2's built-in Kueue workloads (components/kueue_policy.py `WORKLOADS`).

The guardrail YAML files stay complete (the Kyverno CLI reads them as they are), so this table is their
source through a sync command that rewrites only those spots, leaving comments and formatting alone:

    .venv/bin/python -m components.pod_templates            # check: lists the files out of sync, exit 1
    .venv/bin/python -m components.pod_templates --write    # rewrite them

In a rule that defines `podSpec` or `podMeta`, each `match` kinds list holds the table's kinds, in table
order, plus any subresource of one of them (e.g. `Pod/ephemeralcontainers`). Any other kind there is out of
sync (the variables would read it at the fallback path) and `--write` removes it: add it to the table instead.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import yaml

from components import yaml_io

ROOT = pathlib.Path(__file__).resolve().parent.parent
GUARDRAIL_GLOB = "policies/kyverno/guardrail-*/guardrail-*.yaml"
COMMAND = ".venv/bin/python -m components.pod_templates --write"


@dataclass(frozen=True)
class PodTemplateKind:
    kind: str
    """The kind as a Kyverno `kinds` entry: `Pod` (core group) or `group/version/Kind`."""
    path: str
    """Dotted path of the pod template (the object holding the pod's `metadata` and `spec`); "" for a Pod,
    which is its own template."""

    @property
    def name(self) -> str:
        """The bare kind, as in an object's `kind`."""
        return self.kind.rsplit("/", 1)[-1]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.path.split(".")) if self.path else ()


# EDIT HERE to make every pod-template guardrail read another kind, then run the sync command (module
# docstring). Paths: the Kubernetes API (apps/v1, batch/v1).
POD_TEMPLATE_KINDS: tuple[PodTemplateKind, ...] = (
    PodTemplateKind("Pod", ""),
    PodTemplateKind("apps/v1/Deployment", "spec.template"),
    PodTemplateKind("apps/v1/StatefulSet", "spec.template"),
    PodTemplateKind("apps/v1/DaemonSet", "spec.template"),
    PodTemplateKind("batch/v1/Job", "spec.template"),
    PodTemplateKind("batch/v1/CronJob", "spec.jobTemplate.spec.template"),
)

POD_VARIABLES: dict[str, str] = {"podSpec": "spec", "podMeta": "metadata"}
"""The guardrails' CEL variables and the field of the pod template each one reads."""


def kyverno_kinds(table: tuple[PodTemplateKind, ...] = POD_TEMPLATE_KINDS) -> list[str]:
    """The match `kinds` of a rule that reads the pod template of every kind in the table."""
    return [k.kind for k in table]


def kind_names(table: tuple[PodTemplateKind, ...] = POD_TEMPLATE_KINDS) -> list[str]:
    """The bare kinds (`Deployment`), in table order."""
    return [k.name for k in table]


def template_paths(table: tuple[PodTemplateKind, ...] = POD_TEMPLATE_KINDS) -> dict[str, tuple[str, ...]]:
    """Bare kind -> keys of its pod template (`()` for a Pod)."""
    return {k.name: k.keys for k in table}


def _optional_path(keys: tuple[str, ...]) -> str:
    return "object" + "".join(f".?{key}" for key in keys) + ".orValue({})"


def cel_lines(field: str, table: tuple[PodTemplateKind, ...] = POD_TEMPLATE_KINDS) -> list[str]:
    """The CEL that reads `field` of the pod template of `object`, one line per branch (as the YAML files
    fold it): one `object.kind` test per path, in table order, and the path most kinds share (the first such)
    as the fallback."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for k in table:
        groups.setdefault(k.keys, []).append(k.name)
    fallback = max(groups, key=lambda keys: len(groups[keys]))
    lines = []
    for keys, names in groups.items():
        if keys == fallback:
            continue
        test = (f"object.kind == '{names[0]}'" if len(names) == 1
                else "object.kind in [" + ", ".join(f"'{n}'" for n in names) + "]")
        lines.append(f"{test} ? {_optional_path(keys + (field,))} :")
    lines.append(_optional_path(fallback + (field,)))
    return lines


def variable_expression(name: str, table: tuple[PodTemplateKind, ...] = POD_TEMPLATE_KINDS) -> str:
    """The CEL of the variable `name` (`podSpec`, `podMeta`), as Kyverno reads it from the folded YAML."""
    return " ".join(cel_lines(POD_VARIABLES[name], table))


# ---------------------------------------------------------------- the sync of the guardrail YAML files

def _get(node: yaml.Node, key: str) -> Optional[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    return None


def _items(node: Optional[yaml.Node]) -> list[Any]:
    return node.value if isinstance(node, yaml.SequenceNode) else []


def _rules(doc: yaml.Node) -> Iterator[yaml.Node]:
    spec = _get(doc, "spec")
    yield from _items(_get(spec, "rules") if spec is not None else None)


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    end = text.find("\n", index)
    return len(text) if end < 0 else end + 1


def _expression_edit(text: str, key: yaml.Node, value: yaml.ScalarNode, lines: list[str]) -> tuple[int, int, str]:
    """Replace the scalar `value` (of `expression:` at `key`) with a folded block of `lines`."""
    key_indent = key.start_mark.column
    start = value.start_mark.index
    indent = key_indent + 2
    if value.style in (">", "|"):
        # A block scalar's content is every following line indented deeper than its key (or blank);
        # trailing blank lines are not part of it.
        end = pos = _line_end(text, start)
        first = True
        while pos < len(text):
            nxt = _line_end(text, pos)
            line = text[pos:nxt]
            if line.strip():
                depth = len(line) - len(line.lstrip(" "))
                if depth <= key_indent:
                    break
                if first:
                    indent, first = depth, False
                end = nxt
            pos = nxt
        end = end - 1 if text[end - 1:end] == "\n" else end
        # Keep what follows the indicator on its line (a comment); the indicator itself becomes `>-`.
        header = start
        while header < len(text) and text[header] in ">|+-0123456789":
            header += 1
        rest = text[header:_line_end(text, start)].rstrip("\n")
        return start, end, ">-" + rest + "\n" + "\n".join(" " * indent + line for line in lines)
    # A flow scalar: a comment after it moves behind the block indicator (below, it would be content).
    end = value.end_mark.index
    line_end = _line_end(text, end)
    line_end -= text[line_end - 1:line_end] == "\n"
    rest = text[end:line_end]
    return start, line_end, ">-" + rest + "\n" + "\n".join(" " * indent + line for line in lines)


def _is_subresource(entry: str) -> bool:
    """`Kind/subresource` or `group/version/Kind/subresource`: subresource names are lower case."""
    return "/" in entry and entry.rpartition("/")[2][:1].islower()


def _kinds_edits(text: str, where: str, kinds: yaml.Node, table: tuple[PodTemplateKind, ...],
                 notes: list[str]) -> list[tuple[int, int, str]]:
    """Rewrite the table's kinds in a block list, in table order, where the first of them stood; the
    subresources of table kinds and every comment stay where they are, any other kind goes."""
    if not isinstance(kinds, yaml.SequenceNode) or kinds.flow_style:
        raise ValueError(f"{where}: `kinds` must be a block list (one `- Kind` per line) for the sync; "
                         f"rewrite it so and run `{COMMAND}`")
    wanted = kyverno_kinds(table)
    names = set(wanted) | set(kind_names(table))
    ours: list[yaml.ScalarNode] = []
    dropped: list[yaml.ScalarNode] = []
    for item in kinds.value:
        entry = item.value
        if entry in wanted:
            ours.append(item)
        elif not (_is_subresource(entry) and entry.rpartition("/")[0] in names):
            dropped.append(item)
            notes.append(f"{where}: kinds entry {entry!r} is not in POD_TEMPLATE_KINDS (nor a subresource of "
                         "one) although the rule reads podSpec/podMeta; the sync removes it, add it to the "
                         "table to keep it")
    if [i.value for i in ours] == wanted and not dropped:
        return []
    anchor = ours[0] if ours else kinds.value[0]
    prefix = text[_line_start(text, anchor.start_mark.index):anchor.start_mark.index]
    # An existing entry keeps its own line (and any comment after it); a new one gets the list's prefix.
    kept = {i.value: text[_line_start(text, i.start_mark.index):_line_end(text, i.start_mark.index)] for i in ours}
    block = "".join(kept.get(k) or f"{prefix}{k}\n" for k in wanted)
    at = _line_start(text, anchor.start_mark.index)
    edits = [(at, at, block)]
    edits += [(_line_start(text, i.start_mark.index), _line_end(text, i.start_mark.index), "")
              for i in ours + dropped]
    return edits


def sync_text(text: str, name: str = "<text>", table: tuple[PodTemplateKind, ...] = POD_TEMPLATE_KINDS,
              notes: Optional[list[str]] = None) -> str:
    """`text` with every `podSpec`/`podMeta` expression and the kinds lists of the rules that read them
    rewritten from `table`; byte-identical when they already agree. Kinds it removes are told in `notes`."""
    notes = [] if notes is None else notes
    edits: list[tuple[int, int, str]] = []
    for doc in yaml.compose_all(text, Loader=yaml_io.Loader):
        for rule in _rules(doc):
            rule_name = getattr(_get(rule, "name"), "value", "?")
            where = f"{name}: rule {rule_name}"
            cel = _get(_get(rule, "validate") or yaml.MappingNode("", []), "cel")
            reads_pod = False
            for var in _items(_get(cel, "variables") if cel is not None else None):
                var_name = getattr(_get(var, "name"), "value", None)
                if var_name not in POD_VARIABLES:
                    continue
                reads_pod = True
                expr_key = next((k for k, _ in var.value if k.value == "expression"), None)
                expr = _get(var, "expression")
                if expr_key is None or not isinstance(expr, yaml.ScalarNode):
                    raise ValueError(f"{where}: variable {var_name} has no `expression`; add one (any text) "
                                     f"and run `{COMMAND}`")
                edits.append(_expression_edit(text, expr_key, expr, cel_lines(POD_VARIABLES[var_name], table)))
            if not reads_pod:
                continue
            match = _get(rule, "match")
            for block in ("any", "all"):
                for flt in _items(_get(match, block) if match is not None else None):
                    kinds = _get(_get(flt, "resources") or yaml.MappingNode("", []), "kinds")
                    if kinds is not None:
                        edits += _kinds_edits(text, where, kinds, table, notes)
    # Apply from the end so earlier offsets stay valid; where a line is both deleted and inserted before,
    # the deletion (the longer span) goes first.
    new_text = text
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        new_text = new_text[:start] + new + new_text[end:]
    if new_text != text:
        _verify(new_text, name, table)
    return new_text


def _verify(text: str, name: str, table: tuple[PodTemplateKind, ...]) -> None:
    """Parse the rewritten text back: each variable and kinds list must read as the table says."""
    for doc in yaml_io.load_all(text):
        for rule in (doc or {}).get("spec", {}).get("rules", []):
            variables = rule.get("validate", {}).get("cel", {}).get("variables", [])
            pod_vars = [v for v in variables if v.get("name") in POD_VARIABLES]
            bad = [v["name"] for v in pod_vars if v.get("expression") != variable_expression(v["name"], table)]
            for flt in (rule.get("match", {}).get("any", []) + rule.get("match", {}).get("all", [])
                        if pod_vars else []):
                kinds = flt.get("resources", {}).get("kinds")
                if kinds is not None and [k for k in kinds if not _is_subresource(k)] != kyverno_kinds(table):
                    bad.append("kinds")
            if bad:
                raise ValueError(f"{name}: rule {rule.get('name')}: the sync could not rewrite {', '.join(bad)} "
                                 "in this layout; edit it by hand to the shape the other guardrail files use")


def guardrail_files(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    return sorted(root.glob(GUARDRAIL_GLOB))


def out_of_sync(root: pathlib.Path = ROOT, table: tuple[PodTemplateKind, ...] = POD_TEMPLATE_KINDS,
                write: bool = False, notes: Optional[list[str]] = None) -> list[pathlib.Path]:
    """Guardrail files whose pod-template spots differ from `table` (rewritten when `write`)."""
    stale = []
    for path in guardrail_files(root):
        text = path.read_text(encoding="utf-8")
        new = sync_text(text, str(path.relative_to(root)), table, notes)
        if new != text:
            stale.append(path)
            if write:
                path.write_text(new, encoding="utf-8")
    return stale


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the files that are out of sync")
    parser.add_argument("--root", type=pathlib.Path, default=ROOT, help="project root (default: this checkout)")
    args = parser.parse_args(argv)
    notes: list[str] = []
    try:
        stale = out_of_sync(args.root, write=args.write, notes=notes)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for note in notes:
        print(note, file=sys.stderr)
    for path in stale:
        rel = path.relative_to(args.root)
        print(f"rewrote {rel}" if args.write else f"{rel}: out of sync with components/pod_templates.py")
    if stale and not args.write:
        print(f"run `{COMMAND}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
