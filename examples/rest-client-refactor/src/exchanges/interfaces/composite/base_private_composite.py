"""BasePrivateComposite: a private exchange (balances) over its REST client."""

from abc import ABC, abstractmethod
from typing import Generic, Optional, TypeVar

RestT = TypeVar("RestT")


class BasePrivateComposite(ABC, Generic[RestT]):
    _private_rest: Optional[RestT] = None

    @abstractmethod
    async def _rest(self) -> RestT:
        """The private REST client, created on first use."""

    async def get_balances(self) -> dict:
        return await (await self._rest()).get_balances()

    async def close(self):
        if self._private_rest is not None:
            await self._private_rest.close()
