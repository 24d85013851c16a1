"""The read scenarios of `make bench`: what they ask for, and the ids, keys and search terms they pick from.

GET task, browse page 1 and a page DEEP_ROWS rows deep (through the cursor Agora hands out), search with selective
terms (matching <= 0.1 % of open tasks) and broad ones (>= 5 %), chosen from the seeded data's own vocabulary.
Each has a twin on the ceiling app (`tests/bench/ceiling_app.py`) serving the same rows with one raw query.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from app.crypto import KeyRing
from app.http.pagination import list_digest, mint_cursor
from app.services.auth import asker_of
from bench.dataset import agent_key
from domain.keys import hash_key
from tests.bench.load import AGORA_SUCCESS, LUA_COUNTING, lua_success_marker

PAGE = 20
DEEP_ROWS = 10_000
KEYS = 1000  # distinct seeded agents whose keys the load generator rotates through


@dataclass(frozen=True)
class Scenario:
    name: str
    agora: str | None  # Lua expression for the request path on Agora (None: ceiling only)
    ceiling: str  # Lua expression for the path on the ceiling app
    ceiling_name: str  # which ceiling this scenario is scored against


@dataclass
class Fixtures:
    """What the Lua scripts pick from: ids, keys, search terms, the deep cursors."""

    min_task: int
    max_task: int
    open_tasks: int
    keys: list[str]
    deep_offset: int
    deep_cursors: list[str]  # one per key: a cursor is bound to the agent it was issued to
    deep_after_id: int
    selective: dict[str, int]  # term -> open tasks it matches
    broad: dict[str, int]


def _matches(connection: psycopg.Connection, term: str) -> int:
    from app.services.tasks import search_query

    (count,) = connection.execute(
        "SELECT count(*) FROM task WHERE status = 'open' AND search @@ to_tsquery('english', %s)",
        (search_query(term),),
    ).fetchone()
    return count


def _spread(items: list, count: int) -> list:
    if len(items) <= count:
        return items
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def fixtures(url: str, keyring: KeyRing) -> Fixtures:
    with psycopg.connect(url, autocommit=True) as connection:
        low, high = connection.execute("SELECT min(id), max(id) FROM task").fetchone()
        (open_tasks,) = connection.execute("SELECT count(*) FROM task WHERE status = 'open'").fetchone()
        agents = [
            row[0]
            for row in connection.execute(
                "SELECT id FROM agent WHERE status = 'active' ORDER BY md5(id::text) LIMIT %s", (KEYS,)
            )
        ]
        # The cursor Agora hands out after DEEP_ROWS rows of the default browse (open, newest first).
        deep_offset = max(0, min(DEEP_ROWS, open_tasks - PAGE - 1))
        row = connection.execute(
            "SELECT id, budget_credits FROM task WHERE status = 'open' ORDER BY id DESC OFFSET %s LIMIT 1",
            (max(deep_offset - 1, 0),),
        ).fetchone()
        after_id, budget = row
        # Minted as the server mints it: signed under the server's data key, bound to each agent's key and to this
        # list.
        position = {"s": "newest", "id": after_id, "v": budget}
        cursors = [
            mint_cursor(
                keyring,
                list_digest(asker_of(hash_key(agent_key(agent))), "/api/v1/tasks", {}, [("status", "open")]),
                position,
            )
            for agent in agents
        ]
        # Search terms from the seeded vocabulary: broad ones match >= 5 % of open tasks, selective ones <= 0.1 %.
        stats = connection.execute(
            "SELECT word, ndoc FROM ts_stat($$SELECT search FROM task WHERE status = 'open'$$)"
            " WHERE word ~ '^[a-z]{4,}$' ORDER BY ndoc DESC, word"
        ).fetchall()
        broad_floor = math.ceil(0.05 * open_tasks)
        selective_cap = max(3, math.floor(0.001 * open_tasks))
        broad: dict[str, int] = {}
        for word, _ in _spread([s for s in stats if broad_floor <= s[1] <= 0.5 * open_tasks], 12):
            count = _matches(connection, word)
            if count >= broad_floor:
                broad[word] = count
        selective: dict[str, int] = {}
        for word, _ in _spread([s for s in stats if 1 <= s[1] <= selective_cap // 2 + 1], 24):
            count = _matches(connection, word)
            if 1 <= count <= selective_cap:
                selective[word] = count
            if len(selective) >= 12:
                break
    if not broad or not selective:
        raise SystemExit(f"bench: found no usable search terms (broad {broad}, selective {selective})")
    return Fixtures(
        min_task=low,
        max_task=high,
        open_tasks=open_tasks,
        keys=[agent_key(agent) for agent in agents],
        deep_offset=deep_offset,
        deep_cursors=cursors,
        deep_after_id=after_id,
        selective=selective,
        broad=broad,
    )


def scenarios(f: Fixtures) -> list[Scenario]:
    task_id = f"math.random({f.min_task}, {f.max_task})"
    return [
        Scenario("plain JSON (framework)", None, '"/plain"', "plain JSON (framework)"),
        Scenario("GET task", f'"/api/v1/tasks/" .. {task_id}', f'"/task/" .. {task_id}', "GET task"),
        Scenario("browse page 1", '"/api/v1/tasks?status=open&limit=20"', '"/browse"', "browse page 1"),
        Scenario(
            f"browse {f.deep_offset:,} deep",
            '"/api/v1/tasks?status=open&limit=20&cursor=" .. cursors[key]',
            f'"/browse?after={f.deep_after_id}"',
            "browse deep",
        ),
        Scenario(
            "search selective",
            '"/api/v1/tasks/search?status=open&limit=20&q=" .. selective[math.random(#selective)]',
            '"/search?q=" .. selective[math.random(#selective)]',
            "search selective",
        ),
        Scenario(
            "search broad",
            '"/api/v1/tasks/search?status=open&limit=20&q=" .. broad[math.random(#broad)]',
            '"/search?q=" .. broad[math.random(#broad)]',
            "search broad",
        ),
    ]


def _lua_list(values: list[str]) -> str:
    return "{" + ", ".join(json.dumps(value) for value in values) + "}"


def lua_script(folder: Path, name: str, path_expression: str, f: Fixtures, *, authenticated: bool) -> Path:
    # `key` picks the agent for the request; the deep page's path uses the same index for that agent's cursor.
    auth = (
        'local key = math.random(#keys)\n  headers["Authorization"] = "Bearer " .. keys[key]' if authenticated else ""
    )
    text = f"""-- generated by tests/bench/run.py
keys = {_lua_list(f.keys if authenticated else [])}
cursors = {_lua_list(f.deep_cursors if authenticated else [])}
selective = {_lua_list(sorted(f.selective))}
broad = {_lua_list(sorted(f.broad))}
{lua_success_marker(AGORA_SUCCESS if authenticated else None)}function init(args)
  math.randomseed(os.time() * 7919 + (thread_number or 0))
end
function request()
  local headers = {{}}
  {auth}
  return wrk.format("GET", {path_expression}, headers)
end
{LUA_COUNTING}"""
    script = folder / (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".lua")
    script.write_text(text)
    return script


def sample_path(path_expression: str, f: Fixtures) -> str:
    """The path a Lua expression yields for one fixed choice (for the pre-flight check)."""
    path = path_expression.replace(f"math.random({f.min_task}, {f.max_task})", str(f.max_task))
    path = path.replace("selective[math.random(#selective)]", json.dumps(sorted(f.selective)[0]))
    path = path.replace("broad[math.random(#broad)]", json.dumps(sorted(f.broad)[0]))
    path = path.replace("cursors[key]", json.dumps(f.deep_cursors[0]))  # the pre-flight sends the first key
    return "".join(part.strip().strip('"') for part in path.split(".."))
