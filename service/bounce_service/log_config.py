"""Logging for `serve`, applied by uvicorn in every worker process.

The access log masks the values of query parameters: a provider's webhook URL may carry its shared
secret (Azure Event Grid's `?code=`), and the API's filters carry e-mail addresses; access logs are read
by far more people than may see either. The parameter names stay, so a line still shows what was asked.

The service's own records (`bounce_service.*`) get a handler too: a spawned worker otherwise has none,
and Python's last-resort handler would print warnings bare and drop everything below them.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

MASK = "***"
SERVICE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # as `bounce-service` logs before serving


def redact_query(path: str) -> str:
    """`/x?code=s3cret&page=2` -> `/x?code=***&page=***`; a bare item (`?s3cret`) is masked whole."""
    path, mark, query = path.partition("?")
    if not mark:
        return path
    items = (f"{item.partition('=')[0]}={MASK}" if "=" in item else MASK for item in query.split("&"))
    return f"{path}?{'&'.join(items)}"


class RedactQuery(logging.Filter):
    """Masks the request line of uvicorn's access records: (client, method, path?query, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact_query(args[2]), *args[3:])
        return True


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's own configuration, with the masking filter on its access handler and a root handler."""
    from uvicorn.config import LOGGING_CONFIG  # here: `scan` and `check` start faster without uvicorn

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_query"] = {"()": f"{__name__}.RedactQuery"}
    config["handlers"]["access"]["filters"] = ["redact_query"]
    config["formatters"]["service"] = {"format": SERVICE_FORMAT}
    config["handlers"]["service"] = {"class": "logging.StreamHandler", "formatter": "service", "stream": "ext://sys.stderr"}
    config["root"] = {"handlers": ["service"], "level": level.upper()}
    return config
