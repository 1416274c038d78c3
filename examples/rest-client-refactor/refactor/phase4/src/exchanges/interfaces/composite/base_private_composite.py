"""BasePrivateComposite: a private exchange (balances) over its REST client."""

from typing import Generic, TypeVar

RestT = TypeVar("RestT")


class BasePrivateComposite(Generic[RestT]):
    def __init__(self, private_rest: RestT):
        self._private_rest: RestT = private_rest

    async def _rest(self) -> RestT:
        return self._private_rest

    async def get_balances(self) -> dict:
        return await (await self._rest()).get_balances()

    async def close(self):
        if self._private_rest is not None:
            await self._private_rest.close()
