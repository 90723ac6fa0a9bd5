"""NDJSON request bodies of the bulk imports: a line is validated as it is read; a bad one rolls back all."""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from ..errors import ApiError
from ..http import parse_json

T = TypeVar("T")


def parse_lines(body: bytes, parse: Callable[[Any], T], what: str) -> Iterator[tuple[int, T]]:
    """(line number, parse(object)) for each non-blank line, as it is read; a bad line raises.

    Line numbers travel with the parsed items so that errors found later, in the database, can still
    name the line (`line N: ...`), as validation errors do. A caller that writes as it reads does so in
    a transaction, which the error rolls back: all lines are imported or none.
    """
    for number, line in numbered_lines(body, what):
        yield number, at_line(number, parse, line)


def numbered_lines(body: bytes, what: str) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of each non-blank line; a body without one is refused once it is read."""
    empty = True
    for number, line in enumerate(body.splitlines(), start=1):
        if line.strip():
            empty = False
            yield number, line
    if empty:
        raise ApiError(400, f"Invalid data: no {what} in body")


def at_line(number: int, parse: Callable[[Any], T], line: bytes) -> T:
    """parse() of a line's JSON value, an error naming the line."""
    try:
        return parse(parse_json(line))
    except ApiError as exc:
        raise ApiError(exc.status, f"line {number}: {exc.message}") from None


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a whole import's objects are built (none of them is cyclic).

    Each of the collections that the allocations would set off walks every object built so far: for
    100,000 lines that is about 40% of the parsing time. Collection resumes (and catches up) right after.
    Other requests that the worker serves meanwhile (while an import awaits its COPY) go without it for
    those seconds too: reference counting still frees all their garbage that has no cycles.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
