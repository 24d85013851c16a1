"""How a declared row type (app/repo/rows.py) writes its SELECT list and reads its rows. No database: the
statements that use them run in every API test."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.repo import tasks
from app.repo.rows import Column, Nested, row_type


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True, slots=True, kw_only=True)
class Tag:
    id: int
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Thing:
    id: int
    colour: Colour
    tags: tuple[str, ...]
    tag: Tag | None
    note: str = "default"


TAG = row_type(Tag, id="g.id", label="g.label")
THING = row_type(
    Thing,
    id="t.id",
    colour=Column("t.colour", Colour),
    tags=Column("t.tags", tuple),
    tag=Nested(TAG, optional=True),
)


def test_the_select_list_aliases_each_expression_with_its_field_and_nested_fields_with_their_path():
    assert THING.columns == (
        't.id AS "id", t.colour AS "colour", t.tags AS "tags", g.id AS "tag_id", g.label AS "tag_label"'
    )
    assert THING.width == 5


def test_a_row_is_read_field_by_field_with_conversions_and_the_nested_record():
    thing = THING.read((7, "blue", ["a", "b"], 3, "urgent"), 0)
    assert thing == Thing(id=7, colour=Colour.BLUE, tags=("a", "b"), tag=Tag(id=3, label="urgent"))
    assert type(thing.colour) is Colour and type(thing.tags) is tuple


def test_an_optional_nested_record_whose_first_column_is_null_is_none():
    assert THING.read((7, "red", [], None, None), 0).tag is None


def test_fields_left_out_of_the_declaration_keep_their_defaults():
    assert THING.read((7, "red", [], None, None), 0).note == "default"


def test_a_row_is_read_from_where_it_starts_in_a_wider_one():
    assert THING.read(("before", 7, "red", [], 3, "x", "after"), 1) == THING.read((7, "red", [], 3, "x"), 0)


def test_read_all_reads_every_row_in_order():
    rows = [(1, "red", [], None, None), (2, "blue", ["z"], None, None)]
    assert [thing.id for thing in THING.read_all(rows)] == [1, 2]


def test_a_search_hit_is_a_task_record_with_its_relevance_last():
    # The search page's rank is the hit's last column (its ORDER BY names the alias).
    hit = tasks._SEARCH_HIT
    assert hit.aliases[: tasks.TASK_RECORD.width] == tasks.TASK_RECORD.aliases
    assert hit.aliases[-1] == "relevance"
