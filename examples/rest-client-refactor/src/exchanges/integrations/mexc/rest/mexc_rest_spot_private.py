"""MEXC REST client: MexcPrivateSpotRest."""

from exchanges.interfaces.rest.rest_base import BaseRestInterface
from infrastructure.networking.http.utils import HmacSigner, RestManager, create_rest_transport_manager


class MexcPrivateSpotRest(BaseRestInterface):
    async def create_rest_manager(self) -> RestManager:
        return create_rest_transport_manager(self.config, HmacSigner(self.config.api_key, self.config.api_secret, "X-MEXC-APIKEY", "X-MEXC-SIGNATURE"))

    async def get_balances(self) -> dict:
        data = await self.request("GET", "/api/v3/account", signed=True)
        return {b["asset"]: float(b["free"]) for b in data["balances"]}
