"""Every YAML read and write of the program, its tools and tests: ``yaml.safe_load``/``safe_dump`` semantics
through libyaml.

PyYAML's pure-Python scanner and emitter are several times slower than libyaml's (a fifth of the test
suite's time went to them). ``CSafeLoader``/``CSafeDumper`` keep the safe constructor, resolver and
representer: plain dicts, lists and scalars, no tag that builds a Python object. Without libyaml (a PyYAML
built without it) the pure-Python classes are used, so results never depend on it, only speed does.
"""

from __future__ import annotations

from typing import IO, Any

import yaml

Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Dumper: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def load(stream: str | bytes | IO[str] | IO[bytes]) -> Any:
    """``yaml.safe_load(stream)``."""
    return yaml.load(stream, Loader=Loader)


def load_all(stream: str | bytes | IO[str] | IO[bytes]) -> list[Any]:
    """``list(yaml.safe_load_all(stream))`` (a list: the stream may be a file about to be closed)."""
    return list(yaml.load_all(stream, Loader=Loader))


def dump(data: Any, stream: IO[str] | None = None, **kwargs: Any) -> Any:
    """``yaml.safe_dump(data, stream, **kwargs)``."""
    return yaml.dump(data, stream, Dumper=Dumper, **kwargs)


def dump_all(documents: Any, stream: IO[str] | None = None, **kwargs: Any) -> Any:
    """``yaml.safe_dump_all(documents, stream, **kwargs)``."""
    return yaml.dump_all(documents, stream, Dumper=Dumper, **kwargs)
