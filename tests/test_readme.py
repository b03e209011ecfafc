"""The README keeps working: its `make` targets exist, its links resolve, its first two commands run.

Cost: `make -n` and `make -p` only (no recipe runs). The render behind `make synth STACK=dev` is the session's
shared dev render (tests/conftest.py `rendered`), so this module adds no render of its own; `make test` is the
command that runs this file, so it is dry-run here and its commands' modules are checked to exist.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import shlex
import subprocess

import pytest

from tools import render

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_LINES = 200


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[\w-]*\n(.*?)^```", text, re.S | re.M)


def make_commands(text: str) -> list[list[str]]:
    """Every `make ...` command in the text's code blocks and inline code, as words (comments dropped)."""
    snippets = [line for block in code_blocks(text) for line in block.splitlines()]
    snippets += re.findall(r"(?<!`)`(make [^`\n]+)`(?!`)", text)
    commands = []
    for line in snippets:
        line = line.split(" #", 1)[0].strip()
        if re.match(r"make(\s|$)", line):
            commands.append(shlex.split(line))
    return commands


def make_targets_in(text: str) -> set[str]:
    """Targets named by the text's make commands (words that are neither options nor VAR=value)."""
    return {w for cmd in make_commands(text) for w in cmd[1:] if not w.startswith("-") and "=" not in w}


def makefile_targets() -> set[str]:
    """Every explicit target of the Makefile and its includes, from make's own database (`make -p`, nothing runs)."""
    out = subprocess.run(["make", "-pRrq", "-f", "Makefile"], cwd=ROOT, capture_output=True, text=True).stdout
    targets: set[str] = set()
    lines = out.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^([A-Za-z0-9][\w.-]*(?: [A-Za-z0-9][\w.-]*)*):(?!=)", line)
        if m and not (i and lines[i - 1].startswith("# Not a target")):
            targets.update(m.group(1).split())
    return targets


def links(text: str) -> list[str]:
    """Relative link and image targets of a Markdown text, without their #anchor."""
    found = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)
    return [t.split("#", 1)[0] for t in found if not re.match(r"[a-z]+:|#", t) and t.split("#", 1)[0]]


def broken_links(doc: pathlib.Path) -> list[str]:
    return [t for t in links(doc.read_text(encoding="utf-8")) if not (doc.parent / t).exists()]


TEXT = README.read_text(encoding="utf-8")


def test_readme_is_a_landing_page():
    lines = len(TEXT.splitlines())
    assert lines <= MAX_LINES, f"README.md has {lines} lines (limit {MAX_LINES}): move details to docs/ and link them"


def test_every_make_target_the_readme_shows_exists():
    shown = make_targets_in(TEXT)
    assert {"synth", "test"} <= shown
    missing = sorted(shown - makefile_targets())
    assert missing == [], f"README.md shows make targets the Makefile (and mk/*.mk) does not define: {missing}"


def test_a_missing_target_is_caught():
    text = "```bash\nmake synth STACK=dev   # ok\nmake no-such-target\n```\nand `make test`\n"
    assert make_targets_in(text) == {"synth", "no-such-target", "test"}
    assert make_targets_in(text) - makefile_targets() == {"no-such-target"}


def test_every_link_in_the_readme_resolves():
    assert links(TEXT), "the README links nothing"
    assert broken_links(README) == []


@pytest.mark.parametrize("doc", sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md")))
def test_every_link_in_the_docs_resolves(doc):
    assert broken_links(ROOT / doc) == []


def test_a_broken_link_is_caught(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "here.md").write_text("x")
    doc = tmp_path / "README.md"
    doc.write_text("[a](docs/here.md#part) [b](docs/gone.md) ![c](docs/gone.svg) [d](https://example.com) [e](#top)")
    assert broken_links(doc) == ["docs/gone.md", "docs/gone.svg"]


def test_every_doc_is_reachable_from_the_readme():
    """A newcomer finds every page under docs/ from the README, directly or through one linked page."""
    seen = {README.resolve()}
    frontier = [README.resolve()]
    for _ in range(2):
        nxt = []
        for doc in frontier:
            for target in links(doc.read_text(encoding="utf-8")):
                path = (doc.parent / target).resolve()
                if path.suffix == ".md" and path.exists() and path not in seen:
                    seen.add(path)
                    nxt.append(path)
        frontier = nxt
    orphans = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md") if p.resolve() not in seen)
    assert orphans == [], f"docs no README path leads to: {orphans}"


def first_commands() -> list[list[str]]:
    return make_commands(TEXT)[:2]


def test_the_first_two_commands_are_synth_and_test():
    assert first_commands() == [["make", "synth", "STACK=dev"], ["make", "test"]]


def _dry_run(*args: str) -> list[list[str]]:
    done = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [shlex.split(line) for line in done.stdout.splitlines() if line.strip()]


def test_make_synth_runs_the_render(tmp_path, monkeypatch, capsys, rendered):
    out = tmp_path / "dev"
    command = first_commands()[0]
    recipe = [c for c in _dry_run(*command[1:], f"OUT={out}") if c[1:3] == ["-m", "tools.render"]]
    assert len(recipe) == 1, "make synth no longer runs `python -m tools.render`"
    python, args = recipe[0][0], recipe[0][3:]
    assert (ROOT / python).exists(), f"{python}: the venv make creates"
    # The render itself: the shared session render of the same stack (render.render, which main calls).
    tree, stdout = rendered("dev")
    assert stdout.startswith("stack dev: ") and " resources rendered to " in stdout
    for part in ("k8s", "cloud", "connectivity.md", "connectivity.svg"):
        assert (tree / part).exists(), f"make synth STACK=dev no longer writes {part}"
    assert any((tree / "k8s").glob("NetworkPolicy.serving.*.yaml"))
    # The command line, through the module's own entry point, down to the render call.
    calls = []
    monkeypatch.setattr(render, "render", lambda stack, path, stack_file=None, one_shot=False: calls.append(
        (stack, path, stack_file)) or render.Rendered({"kubernetes:core/v1:Namespace": 1}, []))
    assert render.main(args) == 0
    assert calls == [("dev", out, None)]
    assert f"stack dev: 1 resources rendered to {out}" in capsys.readouterr().out


def test_make_test_lints_then_runs_pytest():
    modules = [c[2] for c in _dry_run(*first_commands()[1][1:]) if c[1:2] == ["-m"]]
    assert modules[-1] == "pytest" and {"ruff", "mypy"} <= set(modules[:-1]), modules
    for module in modules:
        assert importlib.util.find_spec(module) is not None, f"make test runs `-m {module}`, which is not installed"


@pytest.mark.parametrize("stack", ["prod"])
def test_other_stacks_render_through_the_same_target(stack, tmp_path):
    recipe = [c for c in _dry_run("synth", f"STACK={stack}", f"OUT={tmp_path}") if c[1:3] == ["-m", "tools.render"]]
    assert recipe and recipe[0][3:] == ["--stack", stack, "--out", str(tmp_path)]
