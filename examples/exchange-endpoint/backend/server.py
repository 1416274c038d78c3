"""The backend API (stdlib http.server): health, metrics, exchanges, Smart
Scalper, support tickets.

Run: APP_PORT=8000 APP_DB=app.db python3 -m backend.server
"""

import hashlib
import json
import os
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from backend.db import pool_stats
from backend.routes import exchanges, smart_scalper, support

REVISION = os.environ.get("APP_REVISION", "dev")


def log(level: str, message: str):
    print(f"{level} {message}", file=sys.stderr, flush=True)


class Handler(BaseHTTPRequestHandler):
    server_version = "intelibotx-backend"

    def log_message(self, fmt, *args):  # access log on stderr, one line each
        log("INFO", fmt % args)

    def _send(self, status: int, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _user(self):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
            return None
        # The same token is the same user across restarts (hash() is salted per process).
        return "user-" + hashlib.sha256(auth.encode()).hexdigest()[:12]

    def _route(self, method: str):
        url = urlparse(self.path)
        if method == "GET" and url.path == "/api/health":
            return 200, {"status": "ok", "message": "API is running", "revision": REVISION}
        if method == "GET" and url.path == "/api/metrics":
            return 200, {"db_pool": pool_stats()}
        if method == "GET" and url.path == "/api/smart-scalper/analysis":
            symbol = parse_qs(url.query).get("symbol", ["BTCUSDT"])[0]
            return smart_scalper.analyze(symbol)
        if method == "GET" and url.path == "/api/smart-scalper/algorithms":
            symbol = parse_qs(url.query).get("symbol", ["BTCUSDT"])[0]
            return smart_scalper.algorithms(symbol)
        if url.path in ("/api/user/exchanges", "/api/support/tickets"):
            user = self._user()
            if user is None:
                return 401, {"detail": "missing bearer token"}
            if method == "GET" and url.path == "/api/user/exchanges":
                return exchanges.list_user_exchanges(user)
            if method == "POST":
                length = int(self.headers.get("Content-Length", "0"))
                try:
                    payload = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError as e:
                    return 400, {"detail": f"invalid JSON: {e}"}
                if url.path == "/api/support/tickets":
                    return support.file_ticket(user, payload)
                return exchanges.add_user_exchange(user, payload)
        return 404, {"detail": f"no route {method} {url.path}"}

    def _handle(self, method: str):
        try:
            status, body = self._route(method)
        except Exception as e:  # the 500s the monitoring plan watches for
            log("ERROR", f"{method} {self.path}: {type(e).__name__}: {e}\n{traceback.format_exc()}")
            status, body = 500, {"detail": f"{type(e).__name__}: {e}"}
        self._send(status, body)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


def main():
    port = int(os.environ.get("APP_PORT", "8000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    log("INFO", f"backend {REVISION} listening on 127.0.0.1:{port}")
    server.serve_forever()


if __name__ == "__main__":
    main()
