"""RecentKeys: which keys a process admitted lately, the hint that lets a read send its authentication with it."""

from __future__ import annotations

from app.services.auth import RecentKeys
from domain.keys import KeyKind


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_remembered_key_names_its_principal_until_its_ttl_passes():
    clock = Clock()
    recent = RecentKeys(ttl=30, clock=clock)
    recent.remember(KeyKind.AGENT, "h1", "agent:7")
    clock.now += 30
    assert recent.principal_of(KeyKind.AGENT, "h1") == "agent:7"
    clock.now += 0.001
    assert recent.principal_of(KeyKind.AGENT, "h1") is None
    assert recent.principal_of(KeyKind.AGENT, "h1") is None  # and it stays gone


def test_remembering_again_extends_the_ttl():
    clock = Clock()
    recent = RecentKeys(ttl=30, clock=clock)
    recent.remember(KeyKind.AGENT, "h1", "agent:7")
    clock.now += 20
    recent.remember(KeyKind.AGENT, "h1", "agent:7")
    clock.now += 20
    assert recent.principal_of(KeyKind.AGENT, "h1") == "agent:7"


def test_a_forgotten_key_is_not_recent():
    recent = RecentKeys()
    recent.remember(KeyKind.AGENT, "h1", "agent:7")
    recent.forget(KeyKind.AGENT, "h1")
    recent.forget(KeyKind.AGENT, "never-seen")
    assert recent.principal_of(KeyKind.AGENT, "h1") is None


def test_the_kind_is_part_of_what_is_remembered():
    recent = RecentKeys()
    recent.remember(KeyKind.OPERATOR, "h1", "operator:3")
    assert recent.principal_of(KeyKind.AGENT, "h1") is None
    assert recent.principal_of(KeyKind.OPERATOR, "h1") == "operator:3"


def test_past_its_capacity_the_least_recently_remembered_key_goes():
    recent = RecentKeys(capacity=2)
    recent.remember(KeyKind.AGENT, "a", "agent:1")
    recent.remember(KeyKind.AGENT, "b", "agent:2")
    recent.remember(KeyKind.AGENT, "a", "agent:1")  # used again: now the newest
    recent.remember(KeyKind.AGENT, "c", "agent:3")
    assert recent.principal_of(KeyKind.AGENT, "b") is None
    assert recent.principal_of(KeyKind.AGENT, "a") == "agent:1"
    assert recent.principal_of(KeyKind.AGENT, "c") == "agent:3"
