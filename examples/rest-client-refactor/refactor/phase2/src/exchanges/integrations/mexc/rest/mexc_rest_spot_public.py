"""MEXC REST client: MexcPublicSpotRest."""

from config.structs import ExchangeConfig
from exchanges.interfaces.rest.rest_base import BaseRestInterface
from infrastructure.networking.http.utils import create_rest_transport_manager


class MexcPublicSpotRest(BaseRestInterface):
    def __init__(self, config: ExchangeConfig):
        super().__init__(config, create_rest_transport_manager(config, None))

    async def get_ticker(self, symbol: str) -> float:
        data = await self.request("GET", "/api/v3/ticker/price", {"symbol": symbol})
        return float(data["price"])
