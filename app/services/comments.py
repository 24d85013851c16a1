"""A task's conversation: post a comment (under the task's lock, with its events), read a page of it."""

from __future__ import annotations

from app.repo import comments as comment_rows
from app.services.uow import UnitOfWork
from domain import comments as conversation
from domain.comments import CommentRecord
from domain.tasks import Actor, task_not_found


async def post_comment(uow: UnitOfWork, actor: Actor, task_id: int, content: str) -> CommentRecord:
    """The participant check and the insert agree: both happen under the task's row lock, which every bid takes."""
    async with uow:
        locked = await comment_rows.lock_for_comment(uow.connection, task_id, actor.agent_id)
        if locked is None:
            raise task_not_found(task_id)
        posting = conversation.post_comment(locked.conversation, actor, content)
        record = comment_rows.new_record(posting.comment, locked.context)
        # The insert and its events go out with the commit: the lock keeps the participants as they were read.
        async with uow.committing(record):
            await comment_rows.insert(uow.connection, posting.comment, locked.context)
            await uow.publish(posting.events(record))
    return record


async def list_comments(uow: UnitOfWork, task_id: int, *, after_id: int, limit: int) -> list[CommentRecord]:
    """Oldest first. The reader's standing and the page come from one statement, with the caller's authentication
    (the reader is known once it has run)."""
    found = await uow.read(comment_rows.page(task_id, after_id=after_id, limit=limit))
    if found is None:
        raise task_not_found(task_id)
    conversation.check_participant(found.standing, _reading_agent(uow), task_id)
    return found.comments


def _reading_agent(uow: UnitOfWork) -> Actor:
    viewer = uow.viewer
    if viewer is None or viewer.agent_id is None or viewer.operator_id is None:
        raise RuntimeError("comments are read by an agent: the route admits agent keys only")
    return Actor(agent_id=viewer.agent_id, operator_id=viewer.operator_id)
