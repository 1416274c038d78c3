"""MexcPrivateComposite: balances on mexc."""

from typing import Optional

from exchanges.integrations.mexc.rest.mexc_rest_spot_private import MexcPrivateSpotRest
from exchanges.interfaces.composite.base_private_composite import BasePrivateComposite


class MexcPrivateComposite(BasePrivateComposite[MexcPrivateSpotRest]):
    def __init__(self, config, logger=None):
        self.config = config
        self.logger = logger
        self._private_rest: Optional[MexcPrivateSpotRest] = None

    async def _rest(self) -> MexcPrivateSpotRest:
        if self._private_rest is None:
            self._private_rest = MexcPrivateSpotRest(self.config)
        return self._private_rest
