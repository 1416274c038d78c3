"""POST /api/support/tickets: the app's "contact support" form.

Each ticket is appended as one line to the support log (APP_SUPPORT_LOG), which
the support desk reads and the monitoring plan watches for "still broken"
reports.
"""

import os
import threading
import time

_lock = threading.Lock()


def file_ticket(user_id: str, payload: dict):
    message = " ".join(str(payload.get("message", "")).split())
    if not message:
        return 422, {"detail": "message is required"}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with _lock, open(os.environ.get("APP_SUPPORT_LOG", "support.log"), "a") as f:
        f.write(f"{stamp} ticket from {user_id}: {message}\n")
    return 201, {"status": "received"}
