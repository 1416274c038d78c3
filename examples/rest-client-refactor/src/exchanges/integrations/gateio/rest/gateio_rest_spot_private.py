"""Gate.io REST client: GateioPrivateSpotRest."""

from exchanges.interfaces.rest.rest_base import BaseRestInterface
from infrastructure.networking.http.utils import HmacSigner, RestManager, create_rest_transport_manager


class GateioPrivateSpotRest(BaseRestInterface):
    async def create_rest_manager(self) -> RestManager:
        return create_rest_transport_manager(self.config, HmacSigner(self.config.api_key, self.config.api_secret, "KEY", "SIGN"))

    async def get_balances(self) -> dict:
        data = await self.request("GET", "/api/v4/spot/accounts", signed=True)
        return {b["currency"]: float(b["available"]) for b in data}
