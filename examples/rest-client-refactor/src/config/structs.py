"""Exchange configuration."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ExchangeConfig:
    name: str
    base_url: str
    api_key: str = ""
    api_secret: str = ""
    timeout: float = 5.0
