"""BaseRestInterface: what every exchange REST client is built on."""

from typing import Optional

from config.structs import ExchangeConfig
from infrastructure.networking.http.utils import RestManager


class BaseRestInterface:
    """The transport is injected at construction: no lazy initialization, no None."""

    def __init__(self, config: ExchangeConfig, rest_manager: RestManager):
        if rest_manager is None:
            raise TypeError(f"{type(self).__name__}: rest_manager is required")
        self.config = config
        self._rest_manager: RestManager = rest_manager

    async def request(self, method: str, path: str, params: Optional[dict] = None, signed: bool = False):
        return await self._rest_manager.request(method, path, params, signed)

    async def close(self):
        await self._rest_manager.close()
