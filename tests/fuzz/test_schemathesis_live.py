"""Schemathesis against two real server processes (reliability.md §5: FUZZ-1 to FUZZ-4), bounded for CI.

All four phases, every check, the agent, operator and admin keys, a fixed seed. Pass: schemathesis reports no
failure, no request got a 5xx, and the admin audit finds the ledger clean afterwards. `make fuzz` is the long run.
"""

from __future__ import annotations

import os

import pytest

from app.repo import migrate
from tests.fuzz.harness import fuzz, verdict
from tests.support import sibling_database

pytestmark = [pytest.mark.live, pytest.mark.timeout(900)]

# Cases per operation and phase; AGORA_FUZZ_EXAMPLES=5 gives a quick look while developing. The seed fixes what
# is generated for this document: when the document grows, a seed may stop producing a read the peer check can
# replay (20261202 did once issue 13's routes were added: 0 probes); the test then says so, and a new seed is chosen.
EXAMPLES = os.environ.get("AGORA_FUZZ_EXAMPLES", "30")
CI_ARGS = ["--max-examples", EXAMPLES, "--seed", "20261204", "--generation-database", "none"]


def test_schemathesis_finds_nothing(database_url: str, tmp_path) -> None:
    # A database of its own: the fuzzer commits thousands of rows, and the audit reads all of them.
    url = sibling_database(database_url, "agora_fuzz")
    migrate.upgrade(url)
    result = fuzz(url, CI_ARGS, tmp_path, timeout=400)
    print(result.summary())
    problems = verdict(result)
    assert not problems, "\n".join([result.summary(), *problems[:50], *(out[-20_000:] for out in result.outputs)])
    # The keys really worked: every phase got through to the marketplace, not only to its error paths,
    for phase in ("examples", "coverage", "fuzzing", "stateful"):
        assert any(c["phase"] == phase and c["status"] < 300 for c in result.calls), f"no 2xx in {phase}"
    # the second agent bid on the first one's tasks,
    assert any(c["key"] == "worker" and "claims" in c["operation"] and c["status"] < 300 for c in result.calls)
    # and object_level_authorization replayed reads of the poster's objects as the worker.
    assert result.peer_probes > 0
