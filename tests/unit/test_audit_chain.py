"""The audit chain's arithmetic: the hash covers every field and the previous hash, and the
check names the first altered, missing or truncated entry."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

from guestcomms.audit.chain import EntryFields, entry_hash, verify_chain


def _chain(length: int) -> list[tuple[EntryFields, str]]:
    entries: list[tuple[EntryFields, str]] = []
    prev = ""
    for seq in range(1, length + 1):
        fields = EntryFields(
            id=uuid.uuid4(),
            chain="c",
            organization_id=None,
            seq=seq,
            actor="cli:ana",
            action="keys.create",
            target=None,
            detail={"fields": ["name"]},
            source="cli",
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            prev_hash=prev,
        )
        prev = entry_hash(fields)
        entries.append((fields, prev))
    return entries


def test_the_hash_covers_every_field() -> None:
    """Changing any one field changes the hash."""
    fields, digest = _chain(1)[0]
    changes = {
        "seq": 2,
        "actor": "cli:eve",
        "action": "x",
        "target": "ct_1",
        "detail": {"fields": []},
        "source": "10.0.0.1",
        "created_at": datetime(2026, 1, 2, tzinfo=UTC),
        "prev_hash": "0" * 64,
        "organization_id": uuid.uuid4(),
    }
    for name, value in changes.items():
        assert entry_hash(dataclasses.replace(fields, **{name: value})) != digest, name


def test_an_untouched_chain_verifies() -> None:
    """Every entry is counted and no problem is found."""
    assert verify_chain("c", _chain(4), head_seq=4) == (4, None)


def test_altered_missing_and_truncated_entries_are_named() -> None:
    """An edited entry is 'altered', a removed middle one leaves 'missing' at the next, a
    removed last one is 'truncated' against the head."""
    chain = _chain(4)
    edited = [*chain[:2], (dataclasses.replace(chain[2][0], actor="cli:eve"), chain[2][1])]
    problem = verify_chain("c", edited, head_seq=4)[1]
    assert problem is not None
    assert (problem.kind, problem.entry_id, problem.seq) == ("altered", chain[2][0].id, 3)
    problem = verify_chain("c", [chain[0], *chain[2:]], head_seq=4)[1]
    assert problem is not None
    assert (problem.kind, problem.seq) == ("missing", 3)
    problem = verify_chain("c", chain[:3], head_seq=4)[1]
    assert problem is not None
    assert (problem.kind, problem.seq) == ("truncated", 3)
