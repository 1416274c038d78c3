"""Phase 5: the request path adds no lazy-initialization work per request."""

import asyncio
import time

from config.structs import ExchangeConfig
from exchanges.integrations.mexc.rest.mexc_rest_spot_public import MexcPublicSpotRest


def test_one_hundred_requests_reuse_one_transport(sim_url):
    rest = MexcPublicSpotRest(ExchangeConfig(name="mexc", base_url=sim_url))
    manager = rest._rest_manager

    async def go():
        for _ in range(100):
            await rest.get_ticker("BTCUSDT")

    start = time.perf_counter()
    asyncio.run(go())
    assert rest._rest_manager is manager and manager.requests == 100
    print(f"100 requests in {(time.perf_counter() - start) * 1000:.0f} ms")
