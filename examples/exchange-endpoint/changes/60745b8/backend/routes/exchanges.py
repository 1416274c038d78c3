"""User exchange connections: POST/GET /api/user/exchanges."""

from backend.db import get_session
from backend.services.exchange_factory import EncryptionService, ExchangeFactory

encryption_service = EncryptionService()


def add_user_exchange(user_id: str, payload: dict):
    """Creates a user's exchange connection; returns (status, body)."""
    exchange_factory = ExchangeFactory(encryption_service)
    try:
        name = payload.get("exchange_name")
        connection = payload.get("connection_name")
        if not name or not connection:
            return 422, {"detail": "exchange_name and connection_name are required"}
        try:
            exchange_factory.connector(name)
        except ValueError as e:
            return 422, {"detail": str(e)}
        key = exchange_factory.encryption_service.encrypt(payload.get("api_key", "none"))
        cur = session.execute(
            "INSERT INTO user_exchanges (user_id, exchange_name, connection_name, api_key_encrypted)"
            " VALUES (?, ?, ?, ?)",
            (user_id, name, connection, key),
        )
        session.commit()
        return 201, {"id": cur.lastrowid, "exchange_name": name, "connection_name": connection}
    finally:
        session.close()


def list_user_exchanges(user_id: str):
    session = get_session()
    try:
        rows = session.execute(
            "SELECT id, exchange_name, connection_name FROM user_exchanges WHERE user_id = ? ORDER BY id",
            (user_id,),
        ).fetchall()
        return 200, [{"id": r[0], "exchange_name": r[1], "connection_name": r[2]} for r in rows]
    finally:
        session.close()
