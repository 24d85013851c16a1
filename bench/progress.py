"""A small progress display on stderr: per-table percentages and rows per second, redrawn in place on a terminal
(a line every few seconds otherwise)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, expected: dict[str, int], *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.expected = dict(expected)
        self.done: dict[str, int] = dict.fromkeys(expected, 0)
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.started = self.phase_started = time.monotonic()
        self.phase = "load"
        self.unit = ""
        self.phase_rows = 0
        self._drawn = 0.0
        self._width = 0

    def start_phase(self, name: str, expected: int = 0, *, unit: str = "") -> None:
        """A new phase; with `unit` its count is shown as items (e.g. indexes built) instead of rows per second."""
        self._newline()
        self.phase = name
        self.unit = unit
        self.phase_started = time.monotonic()
        self.phase_rows = 0
        if expected:
            self.expected[name] = expected
            self.done[name] = 0
        self._draw(force=True)

    def add(self, table: str, rows: int) -> None:
        self.done[table] = self.done.get(table, 0) + rows
        self.phase_rows += rows
        self._draw()

    def note(self, message: str) -> None:
        self._newline()
        if self.enabled:
            print(f"  {message}", file=self.stream, flush=True)

    def finish(self) -> None:
        self._draw(force=True)
        self._newline()

    def _line(self) -> str:
        elapsed = time.monotonic() - self.phase_started
        rate = self.phase_rows / elapsed if elapsed > 0 else 0.0
        if self.phase == "load":
            parts = [
                f"{table} {min(100.0, 100.0 * self.done[table] / total):.0f}%"
                for table, total in self.expected.items()
                if total and table in self.done and "." not in table
            ]
        else:
            total = self.expected.get(self.phase, 0)
            done = self.done.get(self.phase, 0)
            parts = [f"{100.0 * done / total:.0f}% ({done:,}/{total:,} {self.unit})"] if total else []
        speed = "" if self.unit or self.phase != "load" else f" | {rate:,.0f} rows/s"
        clock = time.monotonic() - self.started
        return f"[{self.phase}] {' '.join(parts)}{speed} | {clock:.0f}s"

    def _draw(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn < (0.25 if self.tty else 5.0):
            return
        self._drawn = now
        line = self._line()
        if self.tty:
            padding = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * padding)
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _newline(self) -> None:
        if self.enabled and self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
