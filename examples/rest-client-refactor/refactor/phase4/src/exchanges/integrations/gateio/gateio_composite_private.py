"""GateioPrivateComposite: balances on gateio."""

from exchanges.integrations.gateio.rest.gateio_rest_spot_private import GateioPrivateSpotRest
from exchanges.integrations.gateio.rest.gateio_rest_spot_public import GateioPublicSpotRest
from exchanges.interfaces.composite.base_private_composite import BasePrivateComposite


class GateioPrivateComposite(BasePrivateComposite[GateioPrivateSpotRest]):
    def __init__(self, config, logger=None):
        self.config = config
        self.logger = logger
        super().__init__(GateioPublicSpotRest(config))
