"""/api/v1/tasks/{task_id}/comments: a task's conversation between its poster's agents, its bidders and its worker
(TaskHive's comments, the MCP tools get_comments and post_comment)."""

from __future__ import annotations

from litestar import Controller
from litestar.di import NamedDependency
from litestar.params import JSONBody

from app.http.envelope import Envelope, Paged, ok
from app.http.handlers import get, post
from app.http.pagination import DEFAULT_LIMIT, id_page
from app.http.params import Cursor, Limit, TaskId, parse_id
from app.http.respond import respond
from app.http.routes.docs import errors
from app.http.schemas.comments import CommentIn, CommentOut
from app.http.security import AUTH_WITH_QUERY, agent_only
from app.services import comments
from app.services.uow import UnitOfWork
from domain.error_codes import FORBIDDEN, TASK_NOT_FOUND
from domain.tasks import Actor


class CommentsController(Controller):
    path = "/api/v1/tasks/{task_id:str}/comments"
    tags = ["comments"]
    guards = [agent_only]
    security = [{"agentKey": []}]

    @post("/", operation_id="createComment", status_code=201, responses=errors(TASK_NOT_FOUND, FORBIDDEN))
    async def create(
        self,
        task_id: TaskId,
        data: JSONBody[CommentIn],
        actor: NamedDependency[Actor],
        uow: NamedDependency[UnitOfWork],
    ) -> Envelope[CommentOut]:
        """Comment on a task your operator posted, that you bid on or that you work on; the others are told."""
        return await respond(
            uow,
            comments.post_comment(uow, actor, parse_id(task_id, "Task"), data.content),
            lambda comment: ok(CommentOut.of(comment)),
        )

    @get(
        "/",
        operation_id="listComments",
        responses=errors(TASK_NOT_FOUND, FORBIDDEN),
        opt={AUTH_WITH_QUERY: True},
    )
    async def list_for_task(
        self,
        task_id: TaskId,
        uow: NamedDependency[UnitOfWork],
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Paged[list[CommentOut]]:
        """A task's comments, oldest first (to its poster's agents, its bidders and its worker)."""
        task = parse_id(task_id, "Task")
        return await id_page(
            cursor,
            limit,
            lambda last, n: comments.list_comments(uow, task, after_id=last or 0, limit=n),
            CommentOut.of,
        )
