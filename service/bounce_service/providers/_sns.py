"""Amazon SNS message authentication: the signing certificate, its URL, and the RSA signature.

The certificate URL comes from the (still unverified) request, so it is matched against the SNS host
pattern before anything is fetched: a looser pattern would let a forger point us at a certificate of
their own, or make us fetch arbitrary URLs. The pattern is stricter than AWS's PHP/JS validators
(`sns.<3+ chars>.amazonaws.com`), which also admit S3's legacy `sns.s3-external-1.amazonaws.com`, a
bucket anyone could have claimed. The same host rule guards the SubscribeURL we GET to confirm.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import urllib.error
import urllib.request
from collections import OrderedDict
from typing import Any, Mapping, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..errors import ApiError
from ._verify import refuse

# sns.<region>.amazonaws.com (commercial and GovCloud regions) or sns.cn-<region>.amazonaws.com.cn.
SNS_HOST = r"sns\.(?:[a-z]{2}(?:-gov)?-[a-z]+-[0-9]{1,2}\.amazonaws\.com|cn-[a-z]+-[0-9]{1,2}\.amazonaws\.com\.cn)"

# Which fields are signed, in signing order, per message type (AWS's verification page, reference §6.3).
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
CACHE_SIZE = 32
MAX_DOWNLOAD = 64 * 1024


class FetchError(Exception):
    """A GET that failed; `transient` failures (network, 5xx) deserve a retry, the others do not."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class Fetcher(Protocol):
    async def get(self, url: str) -> bytes: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect could leave the SNS host the URL was checked against


class HttpsFetcher:
    """GET with a timeout and a size cap, in a worker thread so the event loop never waits on AWS."""

    def __init__(self, *, context: ssl.SSLContext | None = None, timeout: float = 5.0) -> None:
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context or ssl.create_default_context()), _NoRedirect
        )
        self.timeout = timeout

    async def get(self, url: str) -> bytes:
        return await asyncio.to_thread(self._get, url)

    def _get(self, url: str) -> bytes:
        try:
            with self.opener.open(url, timeout=self.timeout) as response:
                body = response.read(MAX_DOWNLOAD + 1)
        except urllib.error.HTTPError as exc:
            raise FetchError(f"HTTP {exc.code}", transient=exc.code >= 500) from None
        except (OSError, ValueError) as exc:  # URLError, timeouts, TLS failures
            raise FetchError(type(exc).__name__, transient=True) from None
        if len(body) > MAX_DOWNLOAD:
            raise FetchError("response too large", transient=False)
        return body


class SnsVerifier:
    """Verifies SNS messages for one provider, with a small LRU cache of signing certificates."""

    def __init__(self, provider: str, fetcher: Fetcher, host: str = SNS_HOST) -> None:
        self.provider = provider
        self.fetcher = fetcher
        self.cert_url = re.compile(rf"https://{host}/SimpleNotificationService-[A-Za-z0-9]+\.pem")
        self.subscribe_url = re.compile(rf"https://{host}/\?Action=ConfirmSubscription&[^#\s]*")
        self.certificates: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()
        # One fetch at a time: a burst of notifications after a start or a certificate rotation waits
        # for the first download instead of sending AWS one request per notification.
        self.fetching = asyncio.Lock()

    def is_subscribe_url(self, url: str) -> bool:
        return self.subscribe_url.fullmatch(url) is not None

    async def verify(self, message: Mapping[str, Any]) -> None:
        url = message.get("SigningCertURL")
        if not isinstance(url, str) or self.cert_url.fullmatch(url) is None:
            raise refuse(self.provider, "SigningCertURL is not an Amazon SNS certificate URL")
        algorithm = HASHES.get(str(message.get("SignatureVersion")))
        if algorithm is None:
            raise refuse(self.provider, "unsupported SignatureVersion (1 or 2 expected)")
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except ValueError:  # not base64, a non-ASCII value included
            raise refuse(self.provider, "invalid signature") from None
        key = await self._public_key(url)
        try:
            key.verify(signature, self.string_to_sign(message), padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise refuse(self.provider, "invalid signature") from None

    @staticmethod
    def string_to_sign(message: Mapping[str, Any]) -> bytes:
        fields = SIGNED_FIELDS[message["Type"]]
        return "".join(f"{name}\n{message[name]}\n" for name in fields if message.get(name) is not None).encode()

    async def _public_key(self, url: str) -> rsa.RSAPublicKey:
        if url in self.certificates:
            self.certificates.move_to_end(url)
            return self.certificates[url]
        async with self.fetching:
            if url in self.certificates:  # fetched while this one waited
                return self.certificates[url]
            return await self._fetch(url)

    async def _fetch(self, url: str) -> rsa.RSAPublicKey:
        try:
            pem = await self.fetcher.get(url)
        except FetchError as exc:
            if exc.transient:
                raise ApiError(503, "could not fetch the SNS signing certificate; retry later", {"Retry-After": "5"}) from None
            raise refuse(self.provider, f"SNS signing certificate not available ({exc})") from None
        try:
            key = x509.load_pem_x509_certificate(pem).public_key()
        except ValueError:
            raise refuse(self.provider, "SigningCertURL does not hold a PEM certificate") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise refuse(self.provider, "SNS signing certificate is not an RSA certificate")
        # Only certificates that parsed are kept, so a failure is retried on the next message.
        self.certificates[url] = key
        if len(self.certificates) > CACHE_SIZE:
            self.certificates.popitem(last=False)
        return key
