"""The retest policy: loading the TOML, and the pure decision of the next allowed step."""

from __future__ import annotations

from pathlib import Path

import pytest

from station.errors import InputError
from station.mes.retest import Next, RetestRule, decide, load_retest_policy

RULE = RetestRule(
    product="800G-DR8",
    operation="final_test",
    max_attempts=3,
    error_auto_retest=True,
    fail_retest_actions=frozenset({"reseat", "clean"}),
    reason_codes=frozenset({"RS01", "CL01"}),
)


def test_first_attempt_is_a_test() -> None:
    decision = decide(RULE, [])
    assert (decision.next, decision.attempt, decision.allowed) == (Next.TEST, 1, True)


def test_error_retests_without_an_action() -> None:
    decision = decide(RULE, ["ERROR"])
    assert (decision.next, decision.attempt) == (Next.RETEST, 2)
    assert decide(RULE, ["ABORTED"]).next is Next.RETEST  # the station ended it, not the unit


def test_fail_needs_an_action_and_a_reason_code() -> None:
    refused = decide(RULE, ["FAIL"])
    assert refused.next is Next.NEEDS_ACTION and not refused.allowed
    assert len(refused.reasons) == 2 and "reseat" in refused.reasons[0]
    only_action = decide(RULE, ["FAIL"], action="reseat")
    assert only_action.next is Next.NEEDS_ACTION and "reason code" in only_action.reasons[0]
    unknown = decide(RULE, ["FAIL"], action="shake", reason_code="RS01")
    assert unknown.next is Next.NEEDS_ACTION and len(unknown.reasons) == 1
    assert decide(RULE, ["FAIL"], action="reseat", reason_code="RS01").next is Next.RETEST


def test_error_needs_an_action_where_auto_retest_is_off() -> None:
    strict = RetestRule(**{**RULE.__dict__, "error_auto_retest": False})
    assert decide(strict, ["ERROR"]).next is Next.NEEDS_ACTION
    assert decide(strict, ["ERROR"], action="clean", reason_code="CL01").next is Next.RETEST


def test_attempts_are_limited_across_stations() -> None:
    assert decide(RULE, ["ERROR", "FAIL"], action="clean", reason_code="CL01").attempt == 3
    exhausted = decide(RULE, ["ERROR", "FAIL", "FAIL"], action="clean", reason_code="CL01")
    assert exhausted.next is Next.EXHAUSTED and exhausted.attempt == 4
    assert "3 of 3 attempts used; last FAIL is final" in exhausted.reasons[0]


def test_a_passed_operation_is_done() -> None:
    assert decide(RULE, ["FAIL", "PASS"]).next is Next.DONE


def test_shipped_policy_loads() -> None:
    policy = load_retest_policy()
    rule = policy.rule("800G-DR8", "final_test")
    assert rule.max_attempts == 3 and "reseat" in rule.fail_retest_actions
    assert "RS01" in rule.reason_codes
    with pytest.raises(InputError, match="no rule"):
        policy.rule("800G-DR8", "burn_in")


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ('[operations.final_test]\nmax_attempts = 0\nfail_retest_actions = ["reseat"]',
         "operations.final_test.max_attempts", "0"),
        ('[operations.final_test]\nmax_attempts = 2\nfail_retest_actions = []',
         "operations.final_test.fail_retest_actions", "[]"),
        ('[operations.final_test]\nmax_attempts = 2\nfail_retest_actions = ["reseat"]\n'
         'retries = 1', "operations.final_test.retries", "''"),
        ('[operations.Final]\nmax_attempts = 2\nfail_retest_actions = ["reseat"]',
         "operations.Final", "'Final'"),
    ],
)  # fmt: skip
def test_bad_policy_names_file_field_and_value(
    tmp_path: Path, text: str, field: str, value: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[product]\nname = "X"\n[reason_codes]\nRS01 = "r"\n{text}\n')
    with pytest.raises(InputError) as caught:
        load_retest_policy(path)
    assert str(caught.value).startswith(f"{path}: {field} = {value}:")


def test_missing_reason_codes_and_paths_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[product]\nname = "X"\n[operations.t]\nmax_attempts = 1\n')
    with pytest.raises(InputError, match="reason_codes"):
        load_retest_policy(path)
    with pytest.raises(InputError, match="no such retest policy"):
        load_retest_policy(tmp_path / "nowhere.toml")
