"""components/yaml_io.py: libyaml speed with exactly yaml.safe_load/safe_dump's results."""

import datetime

import pytest
import yaml

from components import yaml_io

# YAML 1.1 corners where a loader could differ: implicit booleans/nulls/octals/sexagesimals, timestamps,
# binary, merge keys, anchors, sets, block scalars, quoted look-alikes, several documents.
TRICKY = """\
bools: [yes, No, on, OFF, true, "yes"]
nulls: [~, null, '', ""]
numbers: [0o17, 017, 0x1F, 1_000, 190:20:30, .inf, -.Inf, .NaN, 1e3, 6.8523015e+5]
when: 2001-12-14t21:59:43.10-05:00
day: 2002-12-14
blob: !!binary R0lGODlhDAAMAIQAAP8=
set: !!set {a, b}
base: &base {cpu: "1", memory: 2Gi}
derived: {<<: *base, memory: 4Gi}
text: |
  line one
    indented
folded: >-
  a
  b
---
second: document
"""


def test_load_matches_safe_load_on_yaml_1_1_corners():
    want = list(yaml.safe_load_all(TRICKY))
    got = yaml_io.load_all(TRICKY)
    assert got == want
    assert got[0]["bools"] == [True, False, True, False, True, "yes"]
    assert got[0]["derived"] == {"cpu": "1", "memory": "4Gi"}
    assert isinstance(got[0]["when"], datetime.datetime) and got[0]["day"] == datetime.date(2002, 12, 14)
    assert yaml_io.load(TRICKY.split("---")[0]) == want[0]


def test_dump_round_trips_like_safe_dump():
    data = yaml.safe_load(TRICKY.split("---")[0])
    data.pop("numbers")  # NaN != NaN
    assert yaml.safe_load(yaml_io.dump(data)) == data
    assert yaml_io.dump({"b": 1, "a": [1, "on"]}) == yaml.safe_dump({"b": 1, "a": [1, "on"]})
    assert list(yaml.safe_load_all(yaml_io.dump_all([{"x": 1}, {"y": "no"}]))) == [{"x": 1}, {"y": "no"}]


def test_load_builds_no_python_objects():
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml_io.load("!!python/object/apply:os.system ['true']")
    with pytest.raises(yaml.representer.RepresenterError):
        yaml_io.dump(object())


def test_libyaml_is_used_when_pyyaml_has_it():
    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML built without libyaml: yaml_io falls back to the pure-Python classes")
    assert yaml_io.Loader is yaml.CSafeLoader and yaml_io.Dumper is yaml.CSafeDumper
