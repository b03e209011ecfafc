"""Session fixtures shared by every test module: one mock run per (stack, mode, config), one render per stack.

The program is deterministic, so running it again for every module only costs time. Tests must treat
the shared records and render trees as read-only (copy before changing them). `make test` runs the suite on
pytest-xdist workers: the first worker to need a run or render computes it, the others load its pickle.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import pathlib
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes_validate import utils as kubernetes_validate_utils

from tools import mockrun

# kubernetes-validate opens and parses the kind's schema and the 1.4 MB `_definitions.json` again on every
# validate() call (7x the validation itself). They are the installed package's files: parse each once per
# process (the validator only reads them).
kubernetes_validate_utils.schema_contents = functools.cache(kubernetes_validate_utils.schema_contents)


def _once_per_session(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, Callable[[], Any]], Any]:
    """`once(key, compute)`: compute() once per test session, also across pytest-xdist workers.

    The first worker to need `key` computes it while holding a lock and pickles the result under the session's
    temporary root (shared by its workers); the others wait for it and load it (milliseconds, where a mock run
    takes a second or two). Within a process results are kept in memory.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # pytest-of-<user>/pytest-<n>/, the workers' common parent
    shared = root / "session-cache"
    shared.mkdir(exist_ok=True)
    memo: dict[str, Any] = {}

    def once(key: str, compute: Callable[[], Any]) -> Any:
        if key not in memo:
            name = hashlib.sha256(key.encode()).hexdigest()[:32]
            with open(shared / f"{name}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released on close, also if this worker dies
                done = shared / f"{name}.pickle"
                if done.exists():
                    memo[key] = pickle.loads(done.read_bytes())
                else:
                    memo[key] = compute()
                    partial = done.with_suffix(".partial")
                    partial.write_bytes(pickle.dumps(memo[key], protocol=pickle.HIGHEST_PROTOCOL))
                    partial.rename(done)
        return memo[key]

    return once


@pytest.fixture(scope="session")
def program_run(tmp_path_factory) -> Callable[..., list[mockrun.Registration]]:
    """`program_run(stack, preview=False, overrides=None, config=None)`: what the program registers under mocks
    for Pulumi.<stack>.yaml plus `overrides` (``{"llm-platform:key": value}``), or for the engine's raw `config`
    (strings) instead; run once per session for each distinct config, whichever test asks first."""
    once = _once_per_session(tmp_path_factory)

    def get(
        stack: str,
        preview: bool = False,
        overrides: dict[str, Any] | None = None,
        config: dict[str, str] | None = None,
    ) -> list[mockrun.Registration]:
        raw = mockrun.stack_config(stack, overrides) if config is None else config
        key = json.dumps(["program_run", stack, preview, raw], sort_keys=True)
        return list(once(key, lambda: mockrun.run(stack, raw, preview=preview)))

    return get


@pytest.fixture(scope="session")
def rendered(tmp_path_factory, program_run) -> Callable[[str], tuple[pathlib.Path, str]]:
    """`rendered(stack)`: (output directory, printed summary) of `make synth STACK=stack`, rendered once per
    session from the session's mock run, with the CLI's own functions."""
    from tools import render

    once = _once_per_session(tmp_path_factory)

    def render_once(stack: str) -> tuple[pathlib.Path, str]:
        out = tmp_path_factory.mktemp(f"render-{stack}") / stack
        rendered = render.render(stack, out, records=program_run(stack))
        stdout = (render.summary(stack, out, rendered.counts) + "\n"
                  + render.guardrails_summary(rendered.guardrails, out) + "\n")
        return out, stdout

    def get(stack: str) -> tuple[pathlib.Path, str]:
        return once(json.dumps(["rendered", stack]), lambda: render_once(stack))

    return get
