"""Phase 5: every REST client holds its transport from construction."""

import asyncio
import inspect

from config.structs import ExchangeConfig
from exchanges.integrations.gateio.rest.gateio_rest_spot_private import GateioPrivateSpotRest
from exchanges.integrations.mexc.rest.mexc_rest_spot_private import MexcPrivateSpotRest
from exchanges.interfaces.rest.rest_base import BaseRestInterface
from infrastructure.networking.http.utils import RestManager


def test_the_transport_is_injected_at_construction(sim_url):
    for cls, name in [(MexcPrivateSpotRest, "mexc"), (GateioPrivateSpotRest, "gateio")]:
        rest = cls(ExchangeConfig(name=name, base_url=sim_url, api_key=f"{name}-key", api_secret=f"{name}-secret"))
        assert isinstance(rest._rest_manager, RestManager), cls
        asyncio.run(rest.close())


def test_no_lazy_initialization_is_left():
    assert not hasattr(BaseRestInterface, "_ensure_rest_manager")
    assert "rest_manager" in inspect.signature(BaseRestInterface.__init__).parameters
