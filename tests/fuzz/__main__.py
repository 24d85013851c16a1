"""`make fuzz`: the long schemathesis run on a throwaway embedded PostgreSQL (or AGORA_TEST_DATABASE_URL).

    python -m tests.fuzz [schemathesis run options...]     e.g. --max-time 1800 --seed 7

Prints what ran and what failed, leaves the reports in .data/fuzz/ (schemathesis output, JUnit, every request's status)
and exits 1 on any failure, any 5xx or an unclean ledger audit.
"""

from __future__ import annotations

import sys

from app.repo import migrate
from tests.fuzz.harness import ROOT, findings_markdown, fuzz, verdict
from tests.support import test_database_url

# FUZZ-1's figure per operation and a fresh seed each run (schemathesis prints it); FUZZ_ARGS come after these.
DEFAULT_ARGS = ["--max-examples", "100"]


def main(argv: list[str]) -> int:
    database_url = test_database_url()
    migrate.upgrade(database_url)
    report_dir = ROOT / ".data" / "fuzz"
    result = fuzz(database_url, [*DEFAULT_ARGS, *argv], report_dir)
    for output in result.outputs:
        print(output)
    problems = verdict(result)
    (report_dir / "findings.md").write_text(findings_markdown(result), encoding="utf-8")
    print(result.summary())
    print(f"reports: {report_dir}")
    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
