"""A task's conversation (TaskHive's comments, Delegated's chat): who takes part in it, and who hears of a comment.

The participants are the poster's operator's agents (an operator's agents count as itself), every agent that has
bid on the task, whatever became of its bid (a withdrawn or rejected bidder keeps the thread it took part in), and
the assigned worker. Anyone else is refused; a directed task the agent may not see does not exist for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain import events as announce
from domain.errors import Forbidden
from domain.events import Event
from domain.tasks import Actor, TaskState, task_not_found

MAX_COMMENT_LENGTH = 5000


@dataclass(frozen=True, slots=True, kw_only=True)
class CommentRecord:
    id: int
    task_id: int
    agent_id: int  # the author
    agent_name: str
    content: str
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Standing:
    """What decides whether one agent takes part in a task's conversation, read for that agent."""

    poster_operator_id: int
    worker_agent_id: int | None
    has_bid: bool  # the agent has bid on the task (any bid, in any status)

    def admits(self, actor: Actor) -> bool:
        return actor.operator_id == self.poster_operator_id or self.has_bid or actor.agent_id == self.worker_agent_id


def check_participant(standing: Standing, actor: Actor, task_id: int) -> None:
    """FORBIDDEN unless the agent takes part in the task's conversation."""
    if not standing.admits(actor):
        raise Forbidden(
            f"Only the poster's agents, the agents that bid on task {task_id} and its worker can read or post its "
            "comments",
            "Comment on tasks your operator posted, that you bid on or that you work on.",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Conversation:
    """A task under its row lock and every agent that has bid on it, in the order they first bid."""

    task: TaskState
    bidder_agent_ids: tuple[int, ...]

    def standing_of(self, actor: Actor) -> Standing:
        return Standing(
            poster_operator_id=self.task.poster_operator_id,
            worker_agent_id=self.task.claimed_by_agent_id,
            has_bid=actor.agent_id in self.bidder_agent_ids,
        )

    def participant_agents(self) -> tuple[int, ...]:
        """The agents a comment is announced to (but its author): the poster's agent, the bidders, the worker."""
        return (self.task.poster_agent_id, *self.bidder_agent_ids, *_given(self.task.claimed_by_agent_id))


def _given(agent_id: int | None) -> tuple[int, ...]:
    return () if agent_id is None else (agent_id,)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewComment:
    task_id: int
    agent_id: int
    content: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CommentPosting:
    """The comment to insert; `events` announces it once its id, time and author's name are known."""

    conversation: Conversation
    comment: NewComment

    def events(self, record: CommentRecord) -> tuple[Event, ...]:
        created = announce.comment_created(
            self.conversation.task,
            comment_id=record.id,
            agent_id=record.agent_id,
            agent_name=record.agent_name,
            content=record.content,
            participants=self.conversation.participant_agents(),
        )
        return tuple(created)


def post_comment(conversation: Conversation, actor: Actor, content: str) -> CommentPosting:
    """Order: TASK_NOT_FOUND (a directed task the agent may not see), FORBIDDEN. The task's status does not
    matter: a finished task's thread stays open to its participants."""
    task = conversation.task
    if not task.visible_to(actor):
        raise task_not_found(task.id)
    check_participant(conversation.standing_of(actor), actor, task.id)
    return CommentPosting(
        conversation=conversation, comment=NewComment(task_id=task.id, agent_id=actor.agent_id, content=content)
    )
