"""POST /api/user/exchanges as seed 000's curl does; prints the status and body.

usage: python3 scripts/smoke.py http://127.0.0.1:8000
"""

import json
import sys
import urllib.error
import urllib.request

base = sys.argv[1].rstrip("/")
req = urllib.request.Request(
    base + "/api/user/exchanges",
    data=json.dumps({"exchange_name": "binance", "connection_name": "test"}).encode(),
    headers={"Authorization": "Bearer smoke-test", "Content-Type": "application/json"},
    method="POST",
)
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        status, body = r.status, r.read().decode()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read().decode()
print(f"HTTP {status} {body}")
sys.exit(0 if status == 201 else 1)
