"""Named queries loaded from sql/queries/*.sql; Python refers to SQL by name only."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

SQL_DIR = Path(os.environ.get("PS_HEALTH_SQL_DIR") or Path(__file__).resolve().parent.parent / "sql")

_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


@functools.cache
def queries(topic: str) -> dict[str, str]:
    """Return name -> SQL text for sql/queries/<topic>.sql (each query headed by `-- name: x`)."""
    text = (SQL_DIR / "queries" / f"{topic}.sql").read_text()
    parts = _HEADER.split(text)
    found = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        found[name] = body.strip().rstrip(";")
    return found


def query(topic: str, name: str) -> str:
    """One named query; KeyError names the file and query when it is missing."""
    try:
        return queries(topic)[name]
    except KeyError:
        raise KeyError(f"no query {name!r} in sql/queries/{topic}.sql") from None
