"""A contact's export as bytes: one JSON document, or a zip of one CSV file per section.

CSV cells are neutralised against formula injection: a cell that starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return gets a leading ``'``, so a spreadsheet shows it as
text instead of evaluating it (OWASP "CSV Injection").
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """``cell`` made inert for spreadsheets: prefixed with ``'`` if it could start a formula."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return neutralise(str(value))


def to_json(sections: dict[str, list[dict[str, Any]]]) -> bytes:
    """The export as one JSON object: the contact, then a list per section."""
    document: dict[str, Any] = {"contact": sections["contact"][0]}
    document.update({name: rows for name, rows in sections.items() if name != "contact"})
    return json.dumps(document, ensure_ascii=False, indent=2).encode()


def _csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return buffer.getvalue()


def to_zip(sections: dict[str, list[dict[str, Any]]]) -> bytes:
    """The export as a zip holding ``<section>.csv`` for each section (a header row, then one
    row per record; nested values as JSON text), every cell neutralised."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, rows in sections.items():
            archive.writestr(f"{name}.csv", _csv(rows))
    return buffer.getvalue()
