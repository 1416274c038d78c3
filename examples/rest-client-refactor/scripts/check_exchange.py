"""Level 3 of seed 002, "Verify specific implementation": one exchange's
private composite, as the engine builds it, fetches balances from the exchange.

usage: python3 scripts/check_exchange.py mexc|gateio http://127.0.0.1:8600
Prints the REST client the composite used and the balances; exits 1 on failure.
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from config.structs import ExchangeConfig  # noqa: E402
from exchanges.integrations.gateio.gateio_composite_private import GateioPrivateComposite  # noqa: E402
from exchanges.integrations.mexc.mexc_composite_private import MexcPrivateComposite  # noqa: E402

COMPOSITES = {"mexc": MexcPrivateComposite, "gateio": GateioPrivateComposite}


async def main(name, url):
    composite = COMPOSITES[name](ExchangeConfig(name, url, f"{name}-key", f"{name}-secret"))
    try:
        balances = await composite.get_balances()
        print(f"{name} balances via {type(composite._private_rest).__name__}: {balances}")
    finally:
        await composite.close()


try:
    asyncio.run(main(sys.argv[1], sys.argv[2]))
except Exception as e:
    print(f"{sys.argv[1]} FAILED: {type(e).__name__}: {e}")
    sys.exit(1)
