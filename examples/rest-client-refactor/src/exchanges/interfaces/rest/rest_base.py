"""BaseRestInterface: what every exchange REST client is built on."""

from abc import ABC, abstractmethod
from typing import Optional

from config.structs import ExchangeConfig
from infrastructure.networking.http.utils import RestManager


class BaseRestInterface(ABC):
    """The transport is created lazily, on the first request."""

    def __init__(self, config: ExchangeConfig):
        self.config = config
        self._rest_manager: Optional[RestManager] = None

    @abstractmethod
    async def create_rest_manager(self) -> RestManager:
        """This exchange's transport (base URL, signer)."""

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
