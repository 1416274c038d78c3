"""Gate.io REST client: GateioPrivateSpotRest."""

from config.structs import ExchangeConfig
from exchanges.interfaces.rest.rest_base import BaseRestInterface
from infrastructure.networking.http.utils import HmacSigner, create_rest_transport_manager


class GateioPrivateSpotRest(BaseRestInterface):
    def __init__(self, config: ExchangeConfig):
        super().__init__(config, create_rest_transport_manager(config, HmacSigner(config.api_key, config.api_secret, "KEY", "SIGN")))

    async def get_balances(self) -> dict:
        data = await self.request("GET", "/api/v4/spot/accounts", signed=True)
        return {b["currency"]: float(b["available"]) for b in data}
