"""Database sessions: one SQLite connection per request."""

import os
import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS user_exchanges (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    exchange_name TEXT NOT NULL,
    connection_name TEXT NOT NULL,
    api_key_encrypted TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
)
"""


def get_session() -> sqlite3.Connection:
    """A new connection to the app database (APP_DB), schema ensured."""
    conn = sqlite3.connect(os.environ.get("APP_DB", "app.db"), timeout=5)
    conn.execute(SCHEMA)
    return conn
