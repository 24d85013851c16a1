"""structlog: JSON lines off a terminal, readable console on one; contextvars (request_id, agent_id) first."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

# Never log these, whatever a caller binds: keys, secrets and the raw Authorization header.
_SECRET_FIELDS = frozenset({"authorization", "api_key", "key", "secret", "password", "token", "plaintext"})


def _redact(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for name in _SECRET_FIELDS.intersection(event):
        event[name] = "[redacted]"
    return event


def _console_renderer() -> structlog.dev.ConsoleRenderer:
    # Rich tracebacks print every frame's local variables by default: a request's Authorization header, a key
    # being hashed, a secret being sealed. Tracebacks show code, never values.
    try:
        import rich  # noqa: F401

        formatter: Any = structlog.dev.RichTracebackFormatter(show_locals=False)
    except ImportError:
        formatter = structlog.dev.plain_traceback
    return structlog.dev.ConsoleRenderer(exception_formatter=formatter)


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else _console_renderer()
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, format="%(name)s %(message)s")
    for noisy in ("uvicorn.access", "httpx", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
