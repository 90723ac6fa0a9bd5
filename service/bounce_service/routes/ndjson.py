"""NDJSON request bodies of the bulk imports: every line is validated before anything is written."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from ..errors import ApiError
from ..http import parse_json

T = TypeVar("T")


def parse_lines(body: bytes, parse: Callable[[Any], T], what: str) -> list[tuple[int, T]]:
    """(line number, parse(object)) for each non-blank line; the first bad line fails the whole body.

    Line numbers travel with the parsed items so that errors found later, in the database, can still
    name the line (`line N: ...`), as validation errors do.
    """
    parsed = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            parsed.append((number, parse(parse_json(line))))
        except ApiError as exc:
            raise ApiError(exc.status, f"line {number}: {exc.message}") from None
    if not parsed:
        raise ApiError(400, f"Invalid data: no {what} in body")
    return parsed
