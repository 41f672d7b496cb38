"""The hash chain, as pure functions: an entry's hash, and the check of a whole chain.

An entry's hash is SHA-256 over a canonical JSON object of its fields (sorted keys, no
spaces) including ``prev_hash``, the hash of the entry before it in the same chain (``""``
for the first). Changing any field of any entry changes its hash; removing an entry leaves a
gap in ``seq`` and a ``prev_hash`` that matches nothing; removing the newest leaves the chain
shorter than its head says.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SYSTEM_CHAIN = "system"  # the chain of entries that belong to no organization


def chain_of(organization_id: uuid.UUID | None) -> str:
    """The chain an organization's entries go to."""
    return organization_id.hex if organization_id is not None else SYSTEM_CHAIN


@dataclass(frozen=True, slots=True)
class EntryFields:
    """What an entry's hash covers: every column but ``hash`` itself."""

    id: uuid.UUID
    chain: str
    organization_id: uuid.UUID | None
    seq: int
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]
    source: str
    created_at: datetime
    prev_hash: str


def entry_hash(fields: EntryFields) -> str:
    """The hex SHA-256 of the entry's canonical JSON."""
    document = {
        "id": fields.id.hex,
        "chain": fields.chain,
        "organization_id": fields.organization_id.hex if fields.organization_id else None,
        "seq": fields.seq,
        "actor": fields.actor,
        "action": fields.action,
        "target": fields.target,
        "detail": fields.detail,
        "source": fields.source,
        "created_at": fields.created_at.isoformat(),
        "prev_hash": fields.prev_hash,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """The first thing wrong with a chain, in words an operator can act on."""

    chain: str
    entry_id: uuid.UUID | None
    seq: int
    kind: str  # "altered", "missing" or "truncated"

    def describe(self) -> str:
        """One line naming the entry."""
        if self.kind == "altered":
            return f"chain {self.chain}: entry {self.entry_id} (seq {self.seq}) was altered"
        if self.kind == "missing":
            return (
                f"chain {self.chain}: entries missing before seq {self.seq} (entry {self.entry_id})"
            )
        return f"chain {self.chain}: entries missing after seq {self.seq} (the chain's end)"


def verify_chain(
    chain: str, entries: Iterable[tuple[EntryFields, str]], *, head_seq: int | None
) -> tuple[int, ChainProblem | None]:
    """Walk ``entries`` (fields and stored hash, in ``seq`` order) and return how many were
    checked and the first problem, or ``None`` when every hash, link and ``seq`` holds and the
    chain ends where its head (``head_seq``, if known) says."""
    expected_seq, prev_hash, count = 1, "", 0
    for fields, stored in entries:
        count += 1
        if entry_hash(fields) != stored:
            return count, ChainProblem(chain, fields.id, fields.seq, "altered")
        if fields.seq != expected_seq or fields.prev_hash != prev_hash:
            return count, ChainProblem(chain, fields.id, fields.seq, "missing")
        expected_seq, prev_hash = fields.seq + 1, stored
    if head_seq is not None and head_seq != expected_seq - 1:
        return count, ChainProblem(chain, None, expected_seq - 1, "truncated")
    return count, None
