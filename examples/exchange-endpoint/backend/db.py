"""Database sessions from a fixed-size connection pool (SQLite connections).

A session is taken from the pool by `get_session()` and given back by its
`close()`; a session never closed is a leak, and when every connection is out
`get_session()` waits, then fails with PoolExhausted (the seed's "session
leaks: database connection pool exhaustion"). `pool_stats()` is what
GET /api/metrics reports.
"""

import os
import sqlite3
import threading

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

POOL_SIZE = int(os.environ.get("APP_DB_POOL_SIZE", "10"))
WAIT_SECONDS = 2.0


class PoolExhausted(RuntimeError):
    pass


class Session:
    """One pooled connection; `close()` gives it back (once)."""

    def __init__(self, pool, conn):
        self._pool, self._conn = pool, conn

    def execute(self, *args):
        return self._conn.execute(*args)

    def commit(self):
        self._conn.commit()

    def close(self):
        if self._conn is not None:
            self._pool.give_back(self._conn)
            self._conn = None


class Pool:
    def __init__(self, size: int):
        self.size = size
        self.in_use = 0
        self._free = []
        self._cond = threading.Condition()

    def take(self) -> sqlite3.Connection:
        with self._cond:
            if not self._cond.wait_for(lambda: self.in_use < self.size, timeout=WAIT_SECONDS):
                raise PoolExhausted(f"database connection pool exhausted ({self.in_use} of {self.size} in use)")
            self.in_use += 1
            if self._free:
                return self._free.pop()
        conn = sqlite3.connect(os.environ.get("APP_DB", "app.db"), timeout=5, check_same_thread=False)
        conn.execute(SCHEMA)
        return conn

    def give_back(self, conn: sqlite3.Connection):
        with self._cond:
            self.in_use -= 1
            self._free.append(conn)
            self._cond.notify()


_pool = Pool(POOL_SIZE)


def get_session() -> Session:
    """A session on a pooled connection to the app database (APP_DB), schema ensured."""
    return Session(_pool, _pool.take())


def pool_stats() -> dict:
    return {
        "size": _pool.size,
        "in_use": _pool.in_use,
        "saturation_percent": round(100.0 * _pool.in_use / _pool.size, 1),
    }
