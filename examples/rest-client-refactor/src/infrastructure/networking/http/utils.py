"""The HTTP transport every exchange REST client sends its requests through."""

import asyncio
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional


class RestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def sign_payload(secret: str, method: str, path: str, query: str, timestamp: str) -> str:
    payload = f"{method}\n{path}\n{query}\n{timestamp}"
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class HmacSigner:
    """Signs private requests with HMAC-SHA256 in the exchange's headers."""

    def __init__(self, api_key: str, api_secret: str, key_header: str, sign_header: str):
        self.api_key = api_key
        self.api_secret = api_secret
        self.key_header = key_header
        self.sign_header = sign_header

    def headers(self, method: str, path: str, query: str) -> dict:
        ts = str(int(time.time() * 1000))
        return {
            self.key_header: self.api_key,
            self.sign_header: sign_payload(self.api_secret, method, path, query, ts),
            "X-Timestamp": ts,
        }


class RestManager:
    """One exchange's transport: base URL, signer, timeout; JSON in and out."""

    def __init__(self, base_url: str, signer: Optional[HmacSigner] = None, timeout: float = 5.0):
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.timeout = timeout
        self.requests = 0
        self.closed = False

    async def request(self, method: str, path: str, params: Optional[dict] = None, signed: bool = False):
        if self.closed:
            raise RuntimeError("request on a closed RestManager")
        self.requests += 1
        return await asyncio.to_thread(self._request, method, path, params or {}, signed)

    def _request(self, method: str, path: str, params: dict, signed: bool):
        query = urllib.parse.urlencode(sorted(params.items()))
        headers = {"Accept": "application/json"}
        if signed:
            if self.signer is None:
                raise RestError(401, f"authentication failed: no signer for {method} {path}")
            headers.update(self.signer.headers(method, path, query))
        url = self.base_url + path + (f"?{query}" if query else "")
        req = urllib.request.Request(url, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise RestError(e.code, e.read().decode(errors="replace")) from None

    async def close(self):
        self.closed = True


def create_rest_transport_manager(config, signer: Optional[HmacSigner] = None) -> RestManager:
    """The transport for an exchange configuration."""
    return RestManager(config.base_url, signer=signer, timeout=config.timeout)
