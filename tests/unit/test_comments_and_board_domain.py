"""Who takes part in a task's conversation and who hears of a comment (domain.comments), and the boards' columns
(domain.board)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain import comments
from domain.board import BOARDS, COLUMN_NAMES, BoardRole, Source, board_column, parse_role
from domain.comments import Conversation, Standing
from domain.errors import Forbidden, InvalidParameter, NotFound
from domain.events import EventType
from domain.tasks import Actor, TaskState, TaskStatus

POSTER = Actor(agent_id=10, operator_id=1)
SIBLING = Actor(agent_id=11, operator_id=1)
WORKER = Actor(agent_id=20, operator_id=2)
BIDDER = Actor(agent_id=30, operator_id=3)
STRANGER = Actor(agent_id=40, operator_id=4)


def task(*, worker: int | None = None, eligible: tuple[int, ...] | None = None, metadata=None) -> TaskState:
    return TaskState(
        id=7,
        poster_operator_id=1,
        poster_agent_id=10,
        status=TaskStatus.CLAIMED if worker else TaskStatus.OPEN,
        budget_credits=100,
        claimed_by_agent_id=worker,
        price_credits=80 if worker else None,
        max_revisions=2,
        assignment=1 if worker else 0,
        eligible_agent_ids=eligible,
        metadata=metadata,
    )


def record(author: Actor) -> comments.CommentRecord:
    return comments.CommentRecord(
        id=5, task_id=7, agent_id=author.agent_id, agent_name="a", content="hi", created_at=datetime.now(UTC)
    )


@pytest.mark.parametrize("actor", [POSTER, SIBLING, WORKER, BIDDER])
def test_the_posters_agents_the_bidders_and_the_worker_take_part(actor):
    conversation = Conversation(task=task(worker=WORKER.agent_id), bidder_agent_ids=(BIDDER.agent_id,))
    assert comments.post_comment(conversation, actor, "hi").comment.agent_id == actor.agent_id


def test_anyone_else_is_forbidden_and_a_directed_task_it_may_not_see_is_not_found():
    with pytest.raises(Forbidden):
        comments.post_comment(Conversation(task=task(), bidder_agent_ids=(BIDDER.agent_id,)), STRANGER, "hi")
    with pytest.raises(NotFound):
        comments.post_comment(Conversation(task=task(eligible=(WORKER.agent_id,)), bidder_agent_ids=()), STRANGER, "x")
    with pytest.raises(Forbidden):  # sees it, took no part
        comments.check_participant(Standing(poster_operator_id=1, worker_agent_id=None, has_bid=False), WORKER, 7)


@pytest.mark.parametrize(
    ("author", "heard"),
    [
        (POSTER, [WORKER.agent_id, BIDDER.agent_id]),
        (SIBLING, [POSTER.agent_id, WORKER.agent_id, BIDDER.agent_id]),
        (WORKER, [POSTER.agent_id, BIDDER.agent_id]),
    ],
)
def test_a_comment_is_announced_to_every_other_participant_once(author, heard):
    # The worker bid too; its agent id comes twice, as a bidder and as the worker, and is told once.
    conversation = Conversation(
        task=task(worker=WORKER.agent_id, metadata={"ref": 1}), bidder_agent_ids=(WORKER.agent_id, BIDDER.agent_id)
    )
    built = comments.post_comment(conversation, author, "hi").events(record(author))
    assert [e.agent_id for e in built] == heard
    assert {e.type for e in built} == {EventType.COMMENT_CREATED}
    for event in built:
        assert ("metadata" in event.data) == (event.agent_id == POSTER.agent_id)


def test_each_status_is_in_at_most_one_column_of_a_board():
    for role, board in BOARDS.items():
        for source in Source:
            statuses = [s for column in board if column.source is source for s in column.statuses]
            assert len(statuses) == len(set(statuses)), role


def test_roles_and_columns_are_parsed_with_the_valid_values_named():
    assert parse_role("worker") is BoardRole.WORKER
    assert board_column(BoardRole.POSTER, "closed").statuses == (TaskStatus.CANCELLED, TaskStatus.EXPIRED)
    with pytest.raises(InvalidParameter, match="role is required"):
        parse_role(None)
    with pytest.raises(InvalidParameter) as refused:
        board_column(BoardRole.WORKER, "closed")
    assert refused.value.suggestion == "Use one of: bidding, doing, in_review, done."
    assert COLUMN_NAMES == ("bidding", "doing", "in_review", "done", "open", "in_progress", "closed")
