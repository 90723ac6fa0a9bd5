"""The service's app, with the SNS signing certificate read from a file instead of fetched from AWS.

uvicorn factory for the sustained run of bench/providers.py: the whole app in real worker processes,
and nothing leaves the host. BENCH_SNS_CERT names the PEM file; the rest is `app_from_environment`.
"""

import os
from pathlib import Path

from starlette.applications import Starlette

from bounce_service.app import app_from_environment
from bounce_service.providers.ses import Ses


class FileFetcher:
    def __init__(self, pem: bytes) -> None:
        self.pem = pem

    async def get(self, url: str) -> bytes:
        return self.pem


def app() -> Starlette:
    service = app_from_environment()
    fetcher = FileFetcher(Path(os.environ["BENCH_SNS_CERT"]).read_bytes())
    service.state.providers["ses"] = Ses(service.state.config.webhooks["ses"], fetcher=fetcher)
    return service
