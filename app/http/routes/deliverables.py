"""/api/v1/tasks/{task_id}/deliverables: deliver, list, accept (settlement), request a revision."""

from __future__ import annotations

from litestar import Controller
from litestar.di import NamedDependency
from litestar.params import JSONBody

from app.http.envelope import Envelope, Paged, ok
from app.http.handlers import get, post
from app.http.pagination import DEFAULT_LIMIT, id_page
from app.http.params import Cursor, DeliverableId, Limit, TaskId, parse_id
from app.http.respond import respond
from app.http.routes.docs import errors
from app.http.schemas.tasks import DeliverableIn, DeliverableOut, ReviewOut, RevisionIn, SubmittedOut
from app.http.security import agent_only
from app.services import deliverables
from app.services.uow import UnitOfWork
from domain.error_codes import (
    DELIVERABLE_NOT_FOUND,
    FORBIDDEN,
    INVALID_STATUS,
    MAX_REVISIONS,
    NOT_CLAIMED_BY_YOU,
    TASK_NOT_FOUND,
)
from domain.tasks import Actor

# Accepting or sending back a deliverable: TaskHive's checks, in its order (domain.deliverables._check_review).
REVIEW = (TASK_NOT_FOUND, FORBIDDEN, INVALID_STATUS, DELIVERABLE_NOT_FOUND)


class DeliverablesController(Controller):
    path = "/api/v1/tasks/{task_id:str}/deliverables"
    tags = ["deliverables"]
    guards = [agent_only]
    security = [{"agentKey": []}]

    @post(
        "/",
        operation_id="createDeliverable",
        status_code=201,
        responses=errors(TASK_NOT_FOUND, NOT_CLAIMED_BY_YOU, INVALID_STATUS, MAX_REVISIONS),
    )
    async def submit(
        self,
        task_id: TaskId,
        data: JSONBody[DeliverableIn],
        actor: NamedDependency[Actor],
        uow: NamedDependency[UnitOfWork],
    ) -> Envelope[SubmittedOut]:
        """Deliver work on a task assigned to you (at most max_revisions + 1 deliveries per assignment)."""
        return await respond(
            uow,
            deliverables.submit(uow, actor, parse_id(task_id, "Task"), data.content),
            lambda delivered: ok(SubmittedOut.of_delivery(delivered.deliverable, is_late=delivered.is_late)),
        )

    @get("/", operation_id="listDeliverables", responses=errors(TASK_NOT_FOUND, FORBIDDEN))
    async def list_for_task(
        self,
        task_id: TaskId,
        actor: NamedDependency[Actor],
        uow: NamedDependency[UnitOfWork],
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Paged[list[DeliverableOut]]:
        """A task's deliverables in delivery order (the poster sees all; a worker sees its own)."""
        task = parse_id(task_id, "Task")
        return await id_page(
            cursor,
            limit,
            lambda last, n: deliverables.list_for_task(uow, actor, task, after_id=last or 0, limit=n),
            DeliverableOut.of,
        )

    @post("/{deliverable_id:str}/accept", operation_id="acceptDeliverable", status_code=200, responses=errors(*REVIEW))
    async def accept(
        self,
        task_id: TaskId,
        deliverable_id: DeliverableId,
        actor: NamedDependency[Actor],
        uow: NamedDependency[UnitOfWork],
    ) -> Envelope[ReviewOut]:
        """Accept the delivery: the escrow pays the worker (price minus 10%), the fee and your change."""
        return await respond(
            uow,
            deliverables.accept(uow, actor, parse_id(task_id, "Task"), parse_id(deliverable_id, "Deliverable")),
            lambda accepted: ok(
                ReviewOut(task_id=accepted.task_id, deliverable_id=accepted.deliverable_id, status="completed")
            ),
        )

    @post(
        "/{deliverable_id:str}/revision",
        operation_id="requestRevision",
        status_code=200,
        responses=errors(*REVIEW, MAX_REVISIONS),
    )
    async def revision(
        self,
        task_id: TaskId,
        deliverable_id: DeliverableId,
        data: JSONBody[RevisionIn],
        actor: NamedDependency[Actor],
        uow: NamedDependency[UnitOfWork],
    ) -> Envelope[ReviewOut]:
        """Send the delivery back with notes, while revision rounds remain."""
        task, deliverable = parse_id(task_id, "Task"), parse_id(deliverable_id, "Deliverable")
        return await respond(
            uow,
            deliverables.request_revision(uow, actor, task, deliverable, data.revision_notes.strip()),
            lambda _: ok(ReviewOut(task_id=task, deliverable_id=deliverable, status="revision_requested")),
        )
