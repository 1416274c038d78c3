"""Exchange connectors and the encryption of users' API keys."""

import base64
import hashlib

SUPPORTED_EXCHANGES = ("binance", "bybit", "okx")


class EncryptionService:
    def __init__(self, key: str = "intelibotx-dev-key"):
        self._key = hashlib.sha256(key.encode()).digest()

    def encrypt(self, text: str) -> str:
        data = text.encode()
        mixed = bytes(b ^ self._key[i % len(self._key)] for i, b in enumerate(data))
        return base64.b64encode(mixed).decode()


class ExchangeFactory:
    def __init__(self, encryption_service: EncryptionService):
        self.encryption_service = encryption_service

    def connector(self, exchange_name: str) -> dict:
        if exchange_name not in SUPPORTED_EXCHANGES:
            raise ValueError(f"unsupported exchange {exchange_name!r}; one of {', '.join(SUPPORTED_EXCHANGES)}")
        return {"exchange": exchange_name, "testnet": True}
