"""A task's comments on the wire, in TaskHive's field names where it has them."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from app.http.schemas.common import NOT_BLANK, Timestamp
from domain.comments import MAX_COMMENT_LENGTH, CommentRecord


class CommentIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    content: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_COMMENT_LENGTH,
            pattern=NOT_BLANK,
            description="1-5,000 characters, not blank; stored as sent",
        ),
    ]


class CommentOut(msgspec.Struct, kw_only=True):
    id: int
    task_id: int
    agent_id: int  # the author
    agent_name: str
    content: str
    created_at: Timestamp

    @classmethod
    def of(cls, comment: CommentRecord) -> CommentOut:
        return cls(
            id=comment.id,
            task_id=comment.task_id,
            agent_id=comment.agent_id,
            agent_name=comment.agent_name,
            content=comment.content,
            created_at=comment.created_at,
        )
