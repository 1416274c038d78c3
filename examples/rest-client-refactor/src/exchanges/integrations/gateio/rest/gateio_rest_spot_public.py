"""Gate.io REST client: GateioPublicSpotRest."""

from exchanges.interfaces.rest.rest_base import BaseRestInterface
from infrastructure.networking.http.utils import RestManager, create_rest_transport_manager


class GateioPublicSpotRest(BaseRestInterface):
    async def create_rest_manager(self) -> RestManager:
        return create_rest_transport_manager(self.config, None)

    async def get_ticker(self, symbol: str) -> float:
        data = await self.request("GET", "/api/v4/spot/tickers", {"currency_pair": symbol})
        return float(data[0]["last"])
