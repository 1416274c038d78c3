"""BaseRestInterface: what every exchange REST client is built on."""

from typing import Optional

from config.structs import ExchangeConfig
from infrastructure.networking.http.utils import RestManager


class BaseRestInterface:
    """The transport is injected at construction; clients not converted yet still
    get theirs lazily from create_rest_manager (until phase 3)."""

    def __init__(self, config: ExchangeConfig, rest_manager: Optional[RestManager] = None):
        self.config = config
        self._rest_manager: Optional[RestManager] = rest_manager

    async def create_rest_manager(self) -> RestManager:
        raise NotImplementedError(f"{type(self).__name__}: inject a RestManager")

    async def _ensure_rest_manager(self) -> RestManager:
        if self._rest_manager is None:
            self._rest_manager = await self.create_rest_manager()
        return self._rest_manager

    async def request(self, method: str, path: str, params: Optional[dict] = None, signed: bool = False):
        await self._ensure_rest_manager()
        return await self._rest_manager.request(method, path, params, signed)

    async def close(self):
        if self._rest_manager is not None:
            await self._rest_manager.close()
