"""MEXC REST client: MexcPrivateSpotRest."""

from config.structs import ExchangeConfig
from exchanges.interfaces.rest.rest_base import BaseRestInterface
from infrastructure.networking.http.utils import HmacSigner, create_rest_transport_manager


class MexcPrivateSpotRest(BaseRestInterface):
    def __init__(self, config: ExchangeConfig):
        super().__init__(config, create_rest_transport_manager(config, HmacSigner(config.api_key, config.api_secret, "X-MEXC-APIKEY", "X-MEXC-SIGNATURE")))

    async def get_balances(self) -> dict:
        data = await self.request("GET", "/api/v3/account", signed=True)
        return {b["asset"]: float(b["free"]) for b in data["balances"]}
