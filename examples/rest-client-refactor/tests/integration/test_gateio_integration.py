import asyncio

from config.structs import ExchangeConfig
from exchanges.integrations.gateio.rest.gateio_rest_futures_public import GateioPublicFuturesRest
from exchanges.integrations.gateio.rest.gateio_rest_spot_private import GateioPrivateSpotRest
from exchanges.integrations.gateio.rest.gateio_rest_spot_public import GateioPublicSpotRest


def config(url):
    return ExchangeConfig(name="gateio", base_url=url, api_key="gateio-key", api_secret="gateio-secret")


def test_private_balances(sim_url):
    async def go():
        rest = GateioPrivateSpotRest(config(sim_url))
        try:
            return await rest.get_balances()
        finally:
            await rest.close()

    assert asyncio.run(go()) == {"USDT": 980.25, "BTC": 0.012}


def test_public_tickers(sim_url):
    async def go():
        spot, futures = GateioPublicSpotRest(config(sim_url)), GateioPublicFuturesRest(config(sim_url))
        return await spot.get_ticker("BTC_USDT"), await futures.get_ticker("BTC_USDT")

    assert asyncio.run(go()) == (64251.3, 64249.9)
