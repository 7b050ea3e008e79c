"""A failed fault report says why its requests failed, so a one-off in CI can be diagnosed from the log."""

from __future__ import annotations

from loadtest.faults.load import Outcome
from loadtest.faults.report import FaultReport


def _report(*outcomes: Outcome) -> FaultReport:
    report = FaultReport("demo", "what it does", "python -m demo")
    report.outcomes = list(outcomes)
    report.check("no request fails", all(o.ok for o in outcomes))
    return report


def test_a_failed_report_lists_the_failed_requests_with_their_messages() -> None:
    ok = Outcome("router", False, started=10.0, ended=10.1, status=200, cost_nanos=5)
    failed = Outcome(
        "fake-large", True, started=12.5, ended=12.75, status=502, error_message='{"error": {"message": "a|b"}}'
    )
    text = _report(ok, failed).markdown()
    assert "Failed requests (first 1 of 1" in text
    assert '| 2.50 | fake-large | True | HTTP 502 | 250 | {"error": {"message": "a\\|b"}} |' in text


def test_the_list_is_capped_and_absent_when_the_report_passes() -> None:
    failures = [Outcome("m", False, started=float(i), ended=i + 1.0, status=503) for i in range(15)]
    assert "first 10 of 15" in _report(*failures).markdown()
    passing = _report(Outcome("m", False, started=0.0, ended=1.0, status=200, cost_nanos=1))
    assert passing.passed and "Failed requests" not in passing.markdown()
