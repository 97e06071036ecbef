"""schemathesis over /api/v1/openapi.json: a bounded, derandomized run on both databases.

Every operation gets a few generated requests, valid ones and invalid ones, sent with an
admin key. The run asserts no server error and no response that contradicts the document
(status, content type, body schema). It prints what each check found, so a regression
shows its count and its first examples.
"""
from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               positive_data_acceptance,
                                               response_schema_conformance,
                                               status_code_conformance)

from api.auth import SCOPES, create_key
from api.ledger import cards

# Per operation: its documented examples, then this many generated valid and invalid cases
# each. About 680 requests: some 20 s a database on a shared CPU.
EXAMPLES_PER_OPERATION = 10
ASSERTED = {"not_a_server_error": not_a_server_error,
            "status_code_conformance": status_code_conformance,
            "content_type_conformance": content_type_conformance,
            "response_schema_conformance": response_schema_conformance}
# Reported, not asserted: random card numbers are mostly unknown (404) or not phones (422).
REPORTED = {"positive_data_acceptance": positive_data_acceptance}


def _first_line(group: BaseExceptionGroup) -> str:
    failure = group.exceptions[0]
    return " ".join(str(failure).split()[:30])[:200]


def run_fuzz(app, key: str) -> tuple[Counter, dict, int]:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    found, examples, sent = Counter(), {}, 0
    statuses = Counter()
    headers = {"Authorization": f"Bearer {key}"}
    for result in schema.get_all_operations():
        operation = result.ok()
        # The documented examples first (they reach the success paths), then generated cases.
        strategy = st.one_of(*schema.get_strategies_from_examples(operation),
                             operation.as_strategy(GenerationMode.POSITIVE),
                             operation.as_strategy(GenerationMode.NEGATIVE))

        @settings(max_examples=EXAMPLES_PER_OPERATION * 2, derandomize=True, database=None,
                  deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        @given(case=strategy)
        def exercise(case):
            nonlocal sent
            if "Idempotency-Key" in (case.headers or {}) or operation.method == "post":
                case.headers = {**(case.headers or {}), "Idempotency-Key": f"fuzz-{sent}"}
            response = case.call(app=app, headers=headers)
            sent += 1
            statuses[response.status_code] += 1
            for name, check in {**ASSERTED, **REPORTED}.items():
                try:
                    case.validate_response(response, checks=[check])
                except BaseExceptionGroup as exc:  # a failed check: count it and keep going
                    found[name] += 1
                    examples.setdefault(name, []).append(
                        f"{operation.method.upper()} {operation.path} {case.path_parameters} "
                        f"-> {response.status_code}: {_first_line(exc)}")

        exercise()
    print("\nstatuses:", dict(sorted(statuses.items())))
    return found, examples, sent


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_violation(app, portal):
    key = create_key(portal, "fuzz", scopes=SCOPES)
    cards.create_card(portal, {"phone": "79161234567", "last_name": "Петрова",
                               "first_name": "Анна", "client_category": "Врач"}, actor="test")
    found, examples, sent = run_fuzz(app, key)
    print(f"\nschemathesis: {sent} requests;", dict(found) or "no failures")
    for name, lines in examples.items():
        print(name, *sorted(set(lines))[:8], sep="\n  ")
    assert sent > 0
    assert {name: found[name] for name in ASSERTED if found[name]} == {}
