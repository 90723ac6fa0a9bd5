"""NDJSON request bodies of the bulk imports: every line is validated before anything is written."""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

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


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a whole import's objects are built (none of them is cyclic).

    Each of the collections that the allocations would set off walks every object built so far: for
    100,000 lines that is about 40% of the parsing time. The block runs without an await, so nothing
    else in the worker allocates meanwhile; collection resumes (and catches up) right after.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
