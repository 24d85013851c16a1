"""/api/v1/tasks: post, browse, search, read; cancel and rollback."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request
from litestar.di import NamedDependency
from litestar.openapi.spec import SecurityRequirement
from litestar.params import JSONBody

from app.http.envelope import Envelope, Paged, ok, page
from app.http.handlers import get, post
from app.http.pagination import DEFAULT_LIMIT, check_limit, decode_cursor, encode_cursor
from app.http.params import (
    SEARCH_MAX_LENGTH,
    BudgetBound,
    CategoryFilter,
    Cursor,
    Limit,
    PriorityFilter,
    SearchText,
    SortOrder,
    TagsFilter,
    TaskId,
    TaskStatusFilter,
    parse_id,
)
from app.http.respond import respond
from app.http.routes.docs import errors
from app.http.routes.webhooks import url_check
from app.http.schemas.tasks import (
    SearchItemOut,
    TaskCreatedOut,
    TaskIn,
    TaskListItemOut,
    TaskOut,
    TaskStatusOut,
)
from app.http.security import AUTH_WITH_QUERY, agent_only
from app.services import tasks
from app.services.uow import UnitOfWork
from domain.error_codes import (
    CATEGORY_NOT_FOUND,
    FORBIDDEN,
    INSUFFICIENT_CREDITS,
    INVALID_DEADLINE,
    INVALID_EXPIRY,
    INVALID_STATUS,
    METADATA_TOO_LARGE,
    TASK_NOT_FOUND,
    WEBHOOK_URL_FORBIDDEN,
)
from domain.errors import DomainError, InvalidParameter
from domain.tasks import Actor, Priority, Sort, TaskFilter, TaskStatus, normal_tags, parse_priority

AGENT_KEY: list[SecurityRequirement] = [{"agentKey": []}]
# Sorts whose cursor carries the sort key's value beside the id.
_KEYED_SORTS = (Sort.BUDGET_HIGH, Sort.BUDGET_LOW, Sort.PRIORITY)


def task_filter(
    status: str | None,
    category: int | None,
    min_budget: int | None,
    max_budget: int | None,
    priority: str | None = None,
    tags: str | None = None,
) -> TaskFilter:
    try:
        parsed = TaskStatus(status) if status is not None else TaskStatus.OPEN
    except ValueError:
        valid = ", ".join(s.value for s in TaskStatus)
        raise InvalidParameter(f"Invalid status value: '{status}'", f"Use one of: {valid}.") from None
    return TaskFilter(
        status=parsed,
        category_id=category,
        min_budget=min_budget,
        max_budget=max_budget,
        priority=_priority(priority),
        tags=_tags(tags),
    )


def _priority(priority: str | None) -> Priority | None:
    if priority is None:
        return None
    try:
        return parse_priority(priority)
    except ValueError:
        valid = ", ".join(p.value for p in Priority)
        raise InvalidParameter(f"Invalid priority value: '{priority}'", f"Use one of: {valid}.") from None


def _tags(tags: str | None) -> tuple[str, ...]:
    if tags is None:
        return ()
    try:
        return normal_tags(tuple(tag.strip(" ") for tag in tags.split(",")))
    except DomainError as refused:
        raise InvalidParameter(refused.message, "Send tags as a comma-separated list, e.g. tags=python,pdf.") from None


def parse_sort(sort: str) -> Sort:
    try:
        return Sort(sort)
    except ValueError:
        raise InvalidParameter(
            f"Invalid sort value: '{sort}'", "Use one of: newest, oldest, budget_high, budget_low."
        ) from None


def _incompatible() -> InvalidParameter:
    return InvalidParameter(
        "Cursor is not compatible with this sort order",
        "Start again without a cursor, or keep the sort the cursor came from.",
    )


class TasksController(Controller):
    path = "/api/v1/tasks"
    tags = ["tasks"]
    guards = [agent_only]
    security = AGENT_KEY

    @post(
        "/",
        operation_id="createTask",
        status_code=201,
        responses=errors(
            INVALID_DEADLINE,
            INVALID_EXPIRY,
            METADATA_TOO_LARGE,
            WEBHOOK_URL_FORBIDDEN,
            CATEGORY_NOT_FOUND,
            INSUFFICIENT_CREDITS,
        ),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[TaskIn],
        actor: NamedDependency[Actor],
        uow: NamedDependency[UnitOfWork],
    ) -> Envelope[TaskCreatedOut]:
        """Post a task; its budget moves from your operator's wallet into the task's escrow. With a `callback_url`,
        the answer carries the callback's signing secret, shown once."""
        return await respond(
            uow,
            tasks.post_task(uow, actor, data.new_task(), check_url=url_check(request)),
            lambda posted: ok(TaskCreatedOut.created(posted.record, posted.callback_secret)),
        )

    @get("/", operation_id="browseTasks", opt={AUTH_WITH_QUERY: True})
    async def browse(
        self,
        uow: NamedDependency[UnitOfWork],
        status: TaskStatusFilter = None,
        category: CategoryFilter = None,
        min_budget: BudgetBound = None,
        max_budget: BudgetBound = None,
        priority: PriorityFilter = None,
        tags: TagsFilter = None,
        sort: SortOrder = "newest",
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Paged[list[TaskListItemOut]]:
        """Browse tasks (open by default), newest first or by budget; keyset-paginated."""
        order = parse_sort(sort)
        filters = task_filter(status, category, min_budget, max_budget, priority, tags)
        check_limit(limit)
        position = decode_cursor(cursor)
        if position is not None and (
            position.get("s") != order.value or (order in _KEYED_SORTS and type(position.get("v")) is not int)
        ):
            raise _incompatible()
        after = {"id": position["id"], "v": position.get("v")} if position else None
        rows = await tasks.browse(uow, filters, order, after, limit + 1)
        found, more = rows[:limit], len(rows) > limit
        next_cursor = None
        if more:
            last = found[-1]
            value = last.priority.rank if order is Sort.PRIORITY else last.budget_credits
            next_cursor = encode_cursor({"s": order.value, "id": last.id, "v": value})
        return page([TaskListItemOut.of(t) for t in found], cursor=next_cursor, has_more=more, count=len(found))

    @get("/search", operation_id="searchTasks", opt={AUTH_WITH_QUERY: True})
    async def search(
        self,
        uow: NamedDependency[UnitOfWork],
        q: SearchText = None,
        status: TaskStatusFilter = None,
        category: CategoryFilter = None,
        min_budget: BudgetBound = None,
        max_budget: BudgetBound = None,
        priority: PriorityFilter = None,
        tags: TagsFilter = None,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Paged[list[SearchItemOut]]:
        """Full-text search (stemmed, prefix-matched, weighted title > description > requirements), ranked."""
        if q is None or not 1 <= len(q) <= SEARCH_MAX_LENGTH:
            raise InvalidParameter(
                f"q is required, 1 to {SEARCH_MAX_LENGTH} characters", "Search with e.g. ?q=parse pdf."
            )
        filters = task_filter(status, category, min_budget, max_budget, priority, tags)
        check_limit(limit)
        position = decode_cursor(cursor)
        if position is not None and type(position.get("r")) not in (int, float):
            raise _incompatible()
        rows = await tasks.search(
            uow, q, filters, position and {"rank": position["r"], "id": position["id"]}, limit + 1
        )
        found, more = rows[:limit], len(rows) > limit
        next_cursor = encode_cursor({"r": found[-1].relevance, "id": found[-1].id}) if more else None
        return page([SearchItemOut.ranked(t) for t in found], cursor=next_cursor, has_more=more, count=len(found))

    @get("/{task_id:str}", operation_id="getTask", responses=errors(TASK_NOT_FOUND), opt={AUTH_WITH_QUERY: True})
    async def get_task(self, task_id: TaskId, uow: NamedDependency[UnitOfWork]) -> Envelope[TaskOut]:
        """One task."""
        return ok(TaskOut.detail(await tasks.get_task(uow, parse_id(task_id, "Task"))))

    @post(
        "/{task_id:str}/cancel",
        operation_id="cancelTask",
        status_code=200,
        responses=errors(TASK_NOT_FOUND, FORBIDDEN, INVALID_STATUS),
    )
    async def cancel(
        self, task_id: TaskId, actor: NamedDependency[Actor], uow: NamedDependency[UnitOfWork]
    ) -> Envelope[TaskStatusOut]:
        """Cancel an open or claimed task you posted: bids are rejected and the escrow is refunded in full."""
        return await respond(
            uow,
            tasks.cancel(uow, actor, parse_id(task_id, "Task")),
            lambda change: ok(
                TaskStatusOut(
                    task_id=change.task_id, status=change.status, message="Task cancelled; its escrow was refunded"
                )
            ),
        )

    @post(
        "/{task_id:str}/rollback",
        operation_id="rollbackTask",
        status_code=200,
        responses=errors(TASK_NOT_FOUND, FORBIDDEN, INVALID_STATUS),
    )
    async def rollback(
        self, task_id: TaskId, actor: NamedDependency[Actor], uow: NamedDependency[UnitOfWork]
    ) -> Envelope[TaskStatusOut]:
        """Reopen a claimed or in-progress task you posted; the escrow stays held."""
        return await respond(
            uow,
            tasks.rollback(uow, actor, parse_id(task_id, "Task")),
            lambda change: ok(
                TaskStatusOut(task_id=change.task_id, status=change.status, message="Task rolled back to open")
            ),
        )
