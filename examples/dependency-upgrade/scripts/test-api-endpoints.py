"""The seed's scripts/test-api-endpoints.sh: every endpoint, its status, a summary.

Usage: python scripts/test-api-endpoints.py [BASE_URL]  (default http://127.0.0.1:5001)
Exits 1 when any endpoint fails.
"""

import json
import sys
import urllib.error
import urllib.request

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5001"
ENDPOINTS = ["/health", "/api/price/EURUSD", "/api/analysis/EURUSD", "/api/chart/EURUSD", "/api/news"]

failed = 0
for path in ENDPOINTS:
    try:
        with urllib.request.urlopen(BASE + path, timeout=5) as r:
            json.load(r)
            print(f"PASS {path} {r.status}")
    except urllib.error.HTTPError as e:
        failed += 1
        print(f"FAIL {path} {e.code}")
    except (OSError, ValueError) as e:
        failed += 1
        print(f"FAIL {path} {e}")
print(f"{len(ENDPOINTS) - failed}/{len(ENDPOINTS)} endpoints pass")
sys.exit(1 if failed else 0)
