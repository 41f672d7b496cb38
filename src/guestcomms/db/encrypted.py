"""Column types that encrypt personal fields at rest when a master key is set.

``EncryptedText`` stores text; ``EncryptedJSON`` stores any JSON value, encrypted as one JSON
string holding the ciphertext (so the column keeps its JSON type and, with encryption off,
its JSON queries). Each names its column (``contacts.email``), which is bound into the
ciphertext. Reads accept plaintext too: rows written before encryption was switched on stay
readable until ``guestcomms keys rotate-data-key`` encrypts them.

Comparing such a column with a value in SQL can never match (the value would be encrypted with
a fresh nonce): look up by the keyed hash columns instead (``security.protection``).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import JSON, Text, TypeDecorator
from sqlalchemy.engine import Dialect

from guestcomms.security.encryption import is_ciphertext
from guestcomms.security.protection import protection_for


class EncryptedText(TypeDecorator[str]):
    """Text, encrypted at rest when the engine's protection encrypts."""

    impl = Text
    cache_ok = True

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return protection_for(dialect).encrypt(value, self.context)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or not is_ciphertext(value):
            return value  # type: ignore[no-any-return]
        return protection_for(dialect).decrypt(value, self.context)


class EncryptedJSON(TypeDecorator[Any]):
    """A JSON value, encrypted at rest (as one JSON string) when the engine's protection
    encrypts."""

    impl = JSON
    cache_ok = True

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        protection = protection_for(dialect)
        if value is None or not protection.encrypting:
            return value
        return protection.encrypt(json.dumps(value, separators=(",", ":")), self.context)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if not is_ciphertext(value):
            return value
        return json.loads(protection_for(dialect).decrypt(value, self.context))
