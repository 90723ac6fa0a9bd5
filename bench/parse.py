"""Bounce parser throughput: messages/s over the test corpus, one core, against MIME parsing alone.

    python bench/parse.py [--seconds 3] [--rounds N]

Then hostile reports of 0.5, 2 and 10 MB (the scanner's default maxMessageSize): seconds per message,
against MIME parsing of the same message.

The baseline, measured in the same run over the same messages, is
``email.message_from_bytes(raw, policy=email.policy.compat32)`` alone: the cost of reading the MIME
structure, which parse_bounce cannot avoid. The ratio (parser / baseline, in messages/s) says how much
the bounce logic costs on top of it; the goal is >= 1,000 messages/s absolute.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "service"))

from bounce_service.mailbox.parser import parse_bounce  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "corpus" / "emails"


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def mime_only(raw: bytes) -> object:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def rates(functions: dict[str, Callable[[bytes], object]], messages: list[bytes], rounds: int) -> dict[str, float]:
    """Best messages/s of each function over ``rounds`` passes (the best pass is the least disturbed by
    other load). The functions take turns, pass by pass, so that a disturbance lasting seconds (this
    host's speed moves within minutes) weighs on both sides of the ratio, not on one."""
    best = dict.fromkeys(functions, float("inf"))
    for i in range(rounds):
        for label, fn in functions.items():
            start = time.perf_counter()
            for raw in messages:
                fn(raw)
            best[label] = min(best[label], time.perf_counter() - start)
        progress(f"round {i + 1}/{rounds}: " + ", ".join(f"{label} {len(messages) / took:,.0f} msg/s"
                                                         for label, took in best.items()) + " so far")
    return {label: len(messages) / took for label, took in best.items()}


def hostile_report(size: int) -> bytes:
    """A message of about ``size`` bytes built to cost a parser the most: plain-text parts full of DSN
    field groups, one recipient each (anyone can mail a bounce mailbox). Time that grew with the square
    of the size made 1.8 MB of it take 272 s before paragraph_for read only the stretch it needed."""
    head = (b"From: MAILER-DAEMON@mx.example.net\nTo: b@example.com\nSubject: Undelivered Mail Returned to Sender\n"
            b'Return-Path: <>\nContent-Type: multipart/mixed; boundary="Z"\n\n')
    block = b"Final-Recipient: rfc822; p%du%d@x.example\nAction: failed\nStatus: 5.1.1\n\n"
    parts, part = [], 0
    while sum(map(len, parts)) < size:
        parts.append(b"--Z\nContent-Type: text/plain\n\n" + b"".join(block % (part, i) for i in range(3500)))
        part += 1
    return head + b"".join(parts) + b"--Z--\n"


def hostile(sizes: list[int]) -> None:
    """Seconds per hostile message of each size, against MIME parsing of the same message."""
    for size in sizes:
        raw = hostile_report(size)
        took = {}
        for label, fn in (("parse_bounce", parse_bounce), ("MIME parse only", mime_only)):
            start = time.perf_counter()
            fn(raw)
            took[label] = time.perf_counter() - start
        progress(f"hostile report of {len(raw) / 1e6:.1f} MB done")
        print(f"hostile report, {len(raw) / 1e6:5.1f} MB:  parse_bounce {took['parse_bounce']:6.2f} s, "
              f"MIME parse only {took['MIME parse only']:6.2f} s, ratio {took['parse_bounce'] / took['MIME parse only']:5.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="approximate parser time to spend (sets --rounds)")
    ap.add_argument("--rounds", type=int, default=0, help="passes over the corpus (overrides --seconds)")
    a = ap.parse_args(argv)

    messages = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]
    if not messages:
        progress(f"no corpus at {CORPUS}")
        return 1
    progress(f"{len(messages)} messages, {sum(map(len, messages)) / 1e6:.1f} MB; warming up")
    start = time.perf_counter()
    for raw in messages:
        parse_bounce(raw)
    rounds = a.rounds or max(3, round(a.seconds / max(time.perf_counter() - start, 1e-6)))

    measured = rates({"parse_bounce": parse_bounce, "MIME parse only": mime_only}, messages, rounds)
    parser, baseline = measured["parse_bounce"], measured["MIME parse only"]
    print(f"parse_bounce:          {parser:10,.0f} messages/s  ({len(messages)} messages, best of {rounds} rounds)")
    print(f"baseline (MIME only):  {baseline:10,.0f} messages/s")
    print(f"ratio parser/baseline: {parser / baseline:10.2f}")
    # Up to the scanner's default maxMessageSize (10 MiB): the seconds should grow with the size, no faster.
    hostile([500_000, 2_000_000, 10_000_000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
