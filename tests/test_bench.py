"""tools/bench.py's helpers (what `make bench` measures is speed; these check what it sets up, never a time)."""

import subprocess
import sys

from components import yaml_io
from tools import bench


def test_stack_file_with_tenants_changes_only_the_tenants(tmp_path):
    path = bench.stack_file_with_tenants("prod", 3, tmp_path)
    original = yaml_io.load((bench.ROOT / "Pulumi.prod.yaml").read_text())["config"]
    written = yaml_io.load(path.read_text())["config"]
    assert written["llm-platform:tenants"] == ["team-0000", "team-0001", "team-0002"], written["llm-platform:tenants"]
    del original["llm-platform:tenants"], written["llm-platform:tenants"]
    assert written == original, "bench stack file: every key but the tenants must be the stack's own"


def test_import_floor_imports_what_it_lists_and_skips_what_fails(tmp_path):
    script = tmp_path / "floor.py"
    script.write_text(bench.floor_script(["json", "no_such_module_for_the_floor"]) +
                      "import sys\nprint('json' in sys.modules, 'no_such_module_for_the_floor' in sys.modules)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["True", "False"], f"import floor: {proc.stdout!r} {proc.stderr!r}"


def test_file_creation_probe_creates_the_files_it_times(tmp_path):
    bench.file_creation_seconds(tmp_path, n=25)
    (probe,) = list(tmp_path.glob("probe-*"))
    assert len(list(probe.iterdir())) == 25, "the probe must create as many files as it reports on"
