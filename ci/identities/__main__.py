"""CI identities of llm-platform; the code and its rationale are in tools/ci_identities.py."""

import pathlib
import sys

# The program lives two levels below the repository, whose `tools` and `components` it imports.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from tools import ci_identities  # noqa: E402

ci_identities.main()
