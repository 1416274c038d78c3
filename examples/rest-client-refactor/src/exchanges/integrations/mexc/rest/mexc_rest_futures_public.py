"""MEXC REST client: MexcPublicFuturesRest."""

from exchanges.interfaces.rest.rest_base import BaseRestInterface
from infrastructure.networking.http.utils import RestManager, create_rest_transport_manager


class MexcPublicFuturesRest(BaseRestInterface):
    async def create_rest_manager(self) -> RestManager:
        return create_rest_transport_manager(self.config, None)

    async def get_ticker(self, symbol: str) -> float:
        data = await self.request("GET", "/api/v1/contract/ticker", {"symbol": symbol})
        return float(data["data"]["lastPrice"])
