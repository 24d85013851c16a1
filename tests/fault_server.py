"""The server the crash tests run (reliability.md §7.2): `agora serve`'s application with a commit observer that
ends the process at one point of a request's commit. Production wiring installs no observer; only this does.

    uvicorn tests.fault_server:app_from_environment --factory      # AGORA_TEST_FAULT_POINT=before_commit
"""

from __future__ import annotations

import os

import structlog
from litestar import Litestar

from app.config import load_settings
from app.logging import configure_logging
from app.main import create_app

#: Where the process dies: just before the request's COMMIT goes out, or once it has (before the response is sent).
POINTS = ("before_commit", "after_commit_before_response")
ENVIRONMENT = "AGORA_TEST_FAULT_POINT"

log = structlog.get_logger("agora.faults")


class CrashAt:
    def __init__(self, point: str) -> None:
        if point not in POINTS:
            raise ValueError(f"{ENVIRONMENT} must be one of {POINTS}, not {point!r}")
        self.point = point

    def before_commit(self) -> None:
        self._crash_if("before_commit")

    def after_commit(self) -> None:
        self._crash_if("after_commit_before_response")

    def _crash_if(self, point: str) -> None:
        if self.point == point:
            log.warning("fault_injected", point=point)
            os._exit(137)


def app_from_environment() -> Litestar:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings, commit_observer=CrashAt(os.environ[ENVIRONMENT]))
