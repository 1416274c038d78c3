"""MexcPrivateComposite: balances on mexc."""

from exchanges.integrations.mexc.rest.mexc_rest_spot_private import MexcPrivateSpotRest
from exchanges.interfaces.composite.base_private_composite import BasePrivateComposite


class MexcPrivateComposite(BasePrivateComposite[MexcPrivateSpotRest]):
    def __init__(self, config, logger=None):
        self.config = config
        self.logger = logger
        super().__init__(MexcPrivateSpotRest(config))
