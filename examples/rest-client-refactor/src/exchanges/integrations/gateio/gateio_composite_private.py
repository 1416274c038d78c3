"""GateioPrivateComposite: balances on gateio."""

from typing import Optional

from exchanges.integrations.gateio.rest.gateio_rest_spot_private import GateioPrivateSpotRest
from exchanges.interfaces.composite.base_private_composite import BasePrivateComposite


class GateioPrivateComposite(BasePrivateComposite[GateioPrivateSpotRest]):
    def __init__(self, config, logger=None):
        self.config = config
        self.logger = logger
        self._private_rest: Optional[GateioPrivateSpotRest] = None

    async def _rest(self) -> GateioPrivateSpotRest:
        if self._private_rest is None:
            self._private_rest = GateioPrivateSpotRest(self.config)
        return self._private_rest
