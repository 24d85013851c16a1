"""Pure tests of how the delivery log reports an attempt (`domain.deliveries.reported_outcome`). No database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.deliveries import AttemptLogOutcome, reported_outcome

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
ENDED = [o for o in AttemptLogOutcome if o not in (AttemptLogOutcome.IN_PROGRESS, AttemptLogOutcome.INTERRUPTED)]


def test_an_attempt_in_progress_stays_so_while_its_claim_runs():
    assert reported_outcome("in_progress", NOW + timedelta(microseconds=1), NOW) is AttemptLogOutcome.IN_PROGRESS


@pytest.mark.parametrize("past", [timedelta(0), timedelta(microseconds=1), timedelta(days=3)])
def test_an_attempt_in_progress_whose_claim_ran_out_was_interrupted(past):
    # From the very moment the claim ends: the delivery is due again then (claims take next_attempt_at <= now()).
    assert reported_outcome("in_progress", NOW - past, NOW) is AttemptLogOutcome.INTERRUPTED


def test_an_attempt_in_progress_without_a_claim_end_is_interrupted():
    assert reported_outcome("in_progress", None, NOW) is AttemptLogOutcome.INTERRUPTED


@pytest.mark.parametrize("outcome", [*ENDED, AttemptLogOutcome.INTERRUPTED])
@pytest.mark.parametrize("claim_ends_at", [None, NOW - timedelta(seconds=1), NOW + timedelta(seconds=1)])
def test_a_recorded_outcome_is_shown_as_recorded(outcome, claim_ends_at):
    assert reported_outcome(outcome.value, claim_ends_at, NOW) is outcome


def test_the_log_knows_every_outcome_the_worker_records_and_the_two_without_one():
    from app.outbound.webhook_client import AttemptOutcome  # what the worker writes when an attempt ends

    assert {o.value for o in AttemptOutcome} == {o.value for o in ENDED}
    assert {AttemptLogOutcome.IN_PROGRESS.value, AttemptLogOutcome.INTERRUPTED.value} == {"in_progress", "interrupted"}


def test_an_unknown_outcome_is_an_error_not_a_guess():
    with pytest.raises(ValueError):
        reported_outcome("exploded", NOW, NOW)
