"""The SR2 harness: tools/kyverno_eval.py with the SR2 profile (kyverno_eval.SR2).

The SR2 policies (require-kueue-queue-name, its ValidatingPolicy rendering, the agent admission
policy, the CI identity policy) are evaluated by the project's one Kyverno evaluator, narrowed to
the subset this harness was written for: no Kubernetes CEL library (quantity(), sum(), ... fail to
compile, as url(), ip() and every other unknown function do), no `selector`, `names`,
`matchExpressions`, `messageExpression`, `generate` or PolicyExceptions. A policy that needs more
fails loudly (tests/test_kueue_policy.py: test_unknown_cel_functions_fail_loudly,
test_rejects_*); run `kyverno test` for it.
"""

from __future__ import annotations

from functools import partial

from tools import kyverno_eval as _eval
from tools.kyverno_eval import (  # noqa: F401
                                AUTOGEN_ANNOTATION,
                                SR2,
                                Case,
                                Outcome,
                                TestSuite,
                                UnsupportedPolicyError,
                                UpdateCase,
                                discover_test_files,
                                discover_update_files,
                                load_yaml_docs,
                                rule_applies,
)

compile_expr = partial(_eval.compile_expr, profile=SR2)
check_policy_supported = partial(_eval.check_policy_supported, profile=SR2)
check_validating_policy_supported = partial(_eval.check_validating_policy_supported, profile=SR2)
load_suite = partial(_eval.load_suite, profile=SR2)
load_update_cases = partial(_eval.load_update_cases, profile=SR2)
webhook_matches = partial(_eval.webhook_matches, profile=SR2)
evaluate_rule = partial(_eval.evaluate_rule, profile=SR2)
evaluate_case = partial(_eval.evaluate_case, profile=SR2)
evaluate_validating_policy = partial(_eval.evaluate_validating_policy, profile=SR2)
