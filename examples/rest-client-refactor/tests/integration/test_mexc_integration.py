import asyncio

from config.structs import ExchangeConfig
from exchanges.integrations.mexc.mexc_composite_private import MexcPrivateComposite
from exchanges.integrations.mexc.rest.mexc_rest_futures_public import MexcPublicFuturesRest
from exchanges.integrations.mexc.rest.mexc_rest_spot_private import MexcPrivateSpotRest
from exchanges.integrations.mexc.rest.mexc_rest_spot_public import MexcPublicSpotRest
from infrastructure.networking.http.utils import RestError


def config(url, secret="mexc-secret"):
    return ExchangeConfig(name="mexc", base_url=url, api_key="mexc-key", api_secret=secret)


def test_private_balances_are_signed(sim_url):
    async def go():
        rest = MexcPrivateSpotRest(config(sim_url))
        try:
            return await rest.get_balances()
        finally:
            await rest.close()

    assert asyncio.run(go()) == {"USDT": 1520.5, "BTC": 0.031}


def test_a_wrong_secret_is_refused(sim_url):
    async def go():
        rest = MexcPrivateSpotRest(config(sim_url, secret="wrong"))
        try:
            await rest.get_balances()
        finally:
            await rest.close()

    try:
        asyncio.run(go())
    except RestError as e:
        assert e.status == 401 and "authentication failed" in str(e)
    else:
        raise AssertionError("a bad signature was accepted")


def test_public_tickers(sim_url):
    async def go():
        spot, futures = MexcPublicSpotRest(config(sim_url)), MexcPublicFuturesRest(config(sim_url))
        return await spot.get_ticker("BTCUSDT"), await futures.get_ticker("BTC_USDT")

    assert asyncio.run(go()) == (64250.10, 64248.5)


def test_composite_balances(sim_url):
    async def go():
        c = MexcPrivateComposite(config(sim_url))
        try:
            return await c.get_balances()
        finally:
            await c.close()

    assert asyncio.run(go())["USDT"] == 1520.5
