"""The arbitrage engine: polls balances on MEXC and Gate.io through their private
composites and logs every request to logs/application.log.

usage: python3 engine.py --sim http://127.0.0.1:8600 [--interval 0.2]
"""

import argparse
import asyncio
import logging
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

from config.structs import ExchangeConfig  # noqa: E402
from exchanges.integrations.gateio.gateio_composite_private import GateioPrivateComposite  # noqa: E402
from exchanges.integrations.mexc.mexc_composite_private import MexcPrivateComposite  # noqa: E402


async def main(args):
    os.makedirs(os.path.dirname(args.log) or ".", exist_ok=True)
    logging.basicConfig(
        filename=args.log, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    log = logging.getLogger("engine")
    composites = {
        "mexc": MexcPrivateComposite(ExchangeConfig("mexc", args.sim, "mexc-key", "mexc-secret")),
        "gateio": GateioPrivateComposite(ExchangeConfig("gateio", args.sim, "gateio-key", "gateio-secret")),
    }
    log.info("engine started (pid %d)", os.getpid())
    while True:
        for name, composite in composites.items():
            start = time.perf_counter()
            try:
                balances = await composite.get_balances()
                ms = (time.perf_counter() - start) * 1000
                log.info("%s balances %s rest_base_request_duration_ms %.1f", name, balances, ms)
            except Exception as e:  # logged for the monitor; the loop goes on
                log.error("%s get_balances failed: %s: %s", name, type(e).__name__, e)
        await asyncio.sleep(args.interval)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim", default="http://127.0.0.1:8600")
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--log", default="logs/application.log")
    asyncio.run(main(ap.parse_args()))
