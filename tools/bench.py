"""Benchmark the offline render: `make bench [STACK=prod] [RUNS=5]`.

Measures, each in a fresh interpreter, `RUNS` times, the cases interleaved:
  render        python -m tools.render --stack STACK   (the whole `make synth`)
  import floor  importing exactly the modules a render imports, and doing nothing else
  1,000 tenants the same render with 1,000 tenant namespaces in the config
and prints min/median/max wall time, median user and system CPU and peak RSS per case (from the
child's own rusage), the render / import-floor ratio, and the NetworkPolicy count at 1 and 1,000
tenants. Speed and memory are measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from components import yaml_io

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Run in the child after a render: list the modules it imported, in import order.
_LIST_MODULES = """
import json, runpy, sys
sys.argv = ["tools.render", *{argv!r}]
try:
    runpy.run_module("tools.render", run_name="__main__")
except SystemExit:
    pass
print(json.dumps([m for m in sys.modules if not m.startswith(("tools", "components", "__main__"))]))
"""


@dataclass
class Sample:
    seconds: float
    max_rss_kib: int
    user: float
    system: float


def timed(argv: list[str]) -> Sample:
    """Wall time and peak RSS of one child, read with wait4 (the child's own rusage, not a running max)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{err}")
    return Sample(elapsed, usage.ru_maxrss, usage.ru_utime, usage.ru_stime)  # KiB on Linux


def imported_modules(stack: str, out: pathlib.Path) -> list[str]:
    """The third-party and stdlib modules one render imports, in order."""
    code = _LIST_MODULES.format(argv=["--stack", stack, "--out", str(out)])
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def floor_script(modules: list[str]) -> str:
    """A program that imports `modules` and nothing else (failures to import are skipped, as the render's were lazy)."""
    # Frozen at the end, as the render freezes its heap: the floor's exit then skips walking it too.
    return (
        "import gc, importlib\n"
        f"for m in {modules!r}:\n"
        "    try:\n        importlib.import_module(m)\n"
        "    except Exception:\n        pass\n"
        "gc.freeze()\n"
    )


def stack_file_with_tenants(stack: str, n: int, directory: pathlib.Path) -> pathlib.Path:
    """Pulumi.<stack>.yaml with `n` tenants (team-0000 ...), written under `directory`."""
    doc = yaml_io.load((ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    doc["config"]["llm-platform:tenants"] = [f"team-{i:04d}" for i in range(n)]
    path = directory / f"Pulumi.{stack}.{n}.yaml"
    path.write_text(yaml_io.dump(doc), encoding="utf-8")
    return path


def file_creation_seconds(directory: pathlib.Path, n: int = 1000) -> float:
    """Seconds to create `n` empty files in a new directory under `directory`: what the file system adds to a
    render that writes one file per object (about 1,080 at 1,000 tenants), reported next to the timings."""
    probe = pathlib.Path(tempfile.mkdtemp(prefix="probe-", dir=directory))
    start = time.perf_counter()
    for i in range(n):
        (probe / f"{i}.yaml").touch()
    return time.perf_counter() - start


def network_policy_count(out: pathlib.Path) -> int:
    return len(list((out / "k8s").glob("NetworkPolicy.*.yaml")))


def stats(samples: list[Sample]) -> tuple[float, float, float, int]:
    secs = [s.seconds for s in samples]
    return min(secs), statistics.median(secs), max(secs), max(s.max_rss_kib for s in samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", type=pathlib.Path, default=ROOT / "build",
                        help="where the renders are written (default build/, where make synth writes)")
    args = parser.parse_args(argv)
    py = sys.executable
    # Every run writes a new directory and nothing is deleted until all runs are done: on ext4 without a
    # journal, files created within minutes after many were deleted nearby cost a scan past each recently
    # freed inode (fs/ext4/ialloc.c, recently_deleted), so re-rendering into one directory would measure
    # the previous run's deletions. What file creation costs there is probed and printed.
    args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-", dir=args.dir) as tmp_name:
        tmp = pathlib.Path(tmp_name)
        creation = file_creation_seconds(tmp)
        modules = imported_modules(args.stack, tmp / "probe")
        floor = tmp / "floor.py"
        floor.write_text(floor_script(modules), encoding="utf-8")
        one = stack_file_with_tenants(args.stack, 1, tmp)
        thousand = stack_file_with_tenants(args.stack, 1000, tmp)
        render = [py, "-m", "tools.render", "--stack", args.stack]
        cases = {
            "import floor": lambda run: [py, str(floor)],
            "render": lambda run: [*render, "--out", str(tmp / f"r-{run}")],
            "render, 1 tenant": lambda run: [*render, "--stack-file", str(one), "--out", str(tmp / f"r1-{run}")],
            "render, 1,000 tenants": lambda run: [*render, "--stack-file", str(thousand),
                                                  "--out", str(tmp / f"r1000-{run}")],
        }
        results: dict[str, list[Sample]] = {name: [] for name in cases}
        # Interleaved, so a slow spell of the machine falls on every case alike.
        for run in range(args.runs):
            for name, argv_of in cases.items():
                results[name].append(timed(argv_of(run)))
        policies_1 = network_policy_count(tmp / "r1-0")
        policies_1000 = network_policy_count(tmp / "r1000-0")

    print(f"stack {args.stack}, {args.runs} runs each, {len(modules)} modules in the import floor")
    print(f"renders written under {args.dir}: creating 1,000 empty files there took {creation:.2f} s\n")
    print(f"{'case':<24} {'min s':>7} {'median s':>9} {'max s':>7} {'user s':>7} {'sys s':>6} {'peak RSS MiB':>13}")
    for name, samples in results.items():
        lo, med, hi, rss = stats(samples)
        user = statistics.median(s.user for s in samples)
        system = statistics.median(s.system for s in samples)
        print(f"{name:<24} {lo:>7.2f} {med:>9.2f} {hi:>7.2f} {user:>7.2f} {system:>6.2f} {rss / 1024:>13.1f}")
    floor_med = stats(results["import floor"])[1]
    render_med = stats(results["render"])[1]
    r1 = stats(results["render, 1 tenant"])[1]
    r1000 = stats(results["render, 1,000 tenants"])[1]
    print(f"\nrender / import floor (median): {render_med / floor_med:.2f}x (target <= 1.5x)")
    print(f"render 1,000 tenants / 1 tenant (median): {r1000 / r1:.2f}x (target <= 1.5x)")
    print(f"NetworkPolicies: {policies_1} at 1 tenant, {policies_1000} at 1,000 tenants")
    return 0


if __name__ == "__main__":
    sys.exit(main())
