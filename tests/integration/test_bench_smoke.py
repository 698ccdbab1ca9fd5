"""The benchmarks at tiny sizes: they run, and what they check for correctness holds. No timing is asserted
here (timing belongs to `make bench` and bench/RESULTS.md)."""

from __future__ import annotations

import pytest

from bench import acceptance, coldstart, dashboard, poller, sweep, webhook
from bench.common import Row

pytestmark = pytest.mark.timeout(600)


def row(rows: list[Row], metric: str) -> Row:
    (found,) = [r for r in rows if metric in r.metric]
    return found


def test_sweep_reads_every_guest_within_the_request_floor_and_honours_retry_after() -> None:
    rows = sweep.run([2000], latency_ms=0, concurrency=8, storm=0.3)

    applied = row(rows, "requests of the applied sweep")
    assert applied.ok, applied  # requests <= floor (pages + batches of 20) + the span query; all actions done
    storm = row(rows, "429 storm")
    assert storm.ok, storm  # throttled, nothing sent during a Retry-After, every guest still read
    assert "2,000 guests" in row(rows, "peak RSS of the sweeping process (plan)").note
    resumed = row(rows, "resume after SIGKILL")
    assert resumed.ok, resumed  # a new process continued the killed run: every guest read, at most two pages read again
    assert "/" in row(rows, "429s answered").value  # reported; how many depends on timing (bench/RESULTS.md)


def test_poller_reads_every_sign_in_of_the_window_under_the_reports_quota() -> None:
    rows = poller.run(sign_ins=6_000)  # 6 pages: two quota windows

    assert "/" in row(rows, "429s answered").value  # reported; how many depends on timing (bench/RESULTS.md)
    note = row(rows, "quota floor").note
    assert int(note.split(" sign-ins")[0].split()[-1].replace(",", "")) >= 6_000, note  # every one read


def test_webhook_loses_no_notification() -> None:
    rows = webhook.run(rate=100.0, count=150, throughput_s=1.0, concurrency=4)

    assert row(rows, "found in the queue").ok, rows
    assert row(rows, "throughput").ok, rows  # every notification of the burst reached the queue


def test_acceptance_licenses_each_guest_once_and_never_over_the_seats() -> None:
    rows = acceptance.run(single=2, crowd=20)

    crowd = row(rows, "accept at once")
    assert crowd.ok, crowd
    assert crowd.value.startswith("10 licensed"), crowd  # 20 guests, 10 seats: all seats used, none over


def test_cold_host_answers_the_validation_handshake() -> None:
    rows = coldstart.run()  # raises if the handshake is not answered within 60 s

    assert row(rows, "first validation handshake").value.endswith(" s")
    assert row(rows, "import function_app").value


def test_dashboard_overview_renders_from_the_aggregates_on_both_state_backends() -> None:
    rows = dashboard.run(guests=2_000, lifecycle=300, rounds=3)  # raises unless each page answered 200 with it

    medians = [r for r in rows if r.metric.startswith("overview median")]
    assert [r.bench.rsplit("(", 1)[1] for r in medians] == ["sqlite)", "table)"]
    assert all(r.value.endswith(" ms") and "300 guests in the lifecycle" in r.note for r in medians), medians
