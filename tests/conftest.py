"""Session fixtures shared by every test module: one mock run per (stack, mode), one render per stack.

The program is deterministic, so running it again for every module only costs time. Tests must treat
the shared records and render trees as read-only (copy before changing them).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import pytest

from tools import mockrun


@pytest.fixture(scope="session")
def program_run() -> Callable[..., list[mockrun.Registration]]:
    """`program_run(stack, preview=False)`: what Pulumi.<stack>.yaml registers under mocks, run once per session."""
    cache: dict[tuple[str, bool], list[mockrun.Registration]] = {}

    def get(stack: str, preview: bool = False) -> list[mockrun.Registration]:
        if (stack, preview) not in cache:
            cache[(stack, preview)] = mockrun.run_stack(stack, preview=preview)
        return list(cache[(stack, preview)])

    return get


@pytest.fixture(scope="session")
def rendered(tmp_path_factory, program_run) -> Callable[[str], tuple[pathlib.Path, str]]:
    """`rendered(stack)`: (output directory, printed summary) of `make synth STACK=stack`, rendered once per
    session from the session's mock run, with the CLI's own functions."""
    from tools import render

    cache: dict[str, tuple[pathlib.Path, str]] = {}

    def get(stack: str) -> tuple[pathlib.Path, str]:
        if stack not in cache:
            out = tmp_path_factory.mktemp(f"render-{stack}") / stack
            rendered = render.render(stack, out, records=program_run(stack))
            stdout = (render.summary(stack, out, rendered.counts) + "\n"
                      + render.guardrails_summary(rendered.guardrails, out) + "\n")
            cache[stack] = (out, stdout)
        return cache[stack]

    return get
