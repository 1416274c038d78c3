"""A local exchange simulator (MEXC and Gate.io REST endpoints) on loopback.

Private endpoints check the HMAC-SHA256 signature as the real exchanges do.
usage: python3 sim/exchange_sim.py --port 8600
"""

import argparse
import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlparse

KEYS = {  # api key -> secret
    "mexc-key": "mexc-secret",
    "gateio-key": "gateio-secret",
}


def signed_ok(headers, method, path, query, key_header, sign_header):
    key = headers.get(key_header)
    if key not in KEYS:
        return False
    payload = f"{method}\n{path}\n{query}\n{headers.get('X-Timestamp', '')}"
    want = hmac.new(KEYS[key].encode(), payload.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, headers.get(sign_header, ""))


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        q = dict(parse_qsl(url.query))
        p = url.path
        if p == "/api/v3/account":
            if not signed_ok(self.headers, "GET", p, url.query, "X-MEXC-APIKEY", "X-MEXC-SIGNATURE"):
                return self._send(401, {"code": 700002, "msg": "authentication failed: signature for this request is not valid"})
            return self._send(200, {"balances": [{"asset": "USDT", "free": "1520.5"}, {"asset": "BTC", "free": "0.031"}]})
        if p == "/api/v4/spot/accounts":
            if not signed_ok(self.headers, "GET", p, url.query, "KEY", "SIGN"):
                return self._send(401, {"label": "INVALID_SIGNATURE", "message": "authentication failed"})
            return self._send(200, [{"currency": "USDT", "available": "980.25"}, {"currency": "BTC", "available": "0.012"}])
        if p == "/api/v3/ticker/price":
            return self._send(200, {"symbol": q.get("symbol", ""), "price": "64250.10"})
        if p == "/api/v1/contract/ticker":
            return self._send(200, {"success": True, "data": {"symbol": q.get("symbol", ""), "lastPrice": 64248.5}})
        if p == "/api/v4/spot/tickers":
            return self._send(200, [{"currency_pair": q.get("currency_pair", ""), "last": "64251.3"}])
        if p == "/api/v4/futures/usdt/tickers":
            return self._send(200, [{"contract": q.get("contract", ""), "last": "64249.9"}])
        return self._send(404, {"msg": f"no route {p}"})


def serve(port: int) -> ThreadingHTTPServer:
    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=int(os.environ.get("SIM_PORT", "8600")))
    args = ap.parse_args()
    server = serve(args.port)
    print(f"exchange simulator on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever()
