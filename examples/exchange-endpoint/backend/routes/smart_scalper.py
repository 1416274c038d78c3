"""Smart Scalper: GET /api/smart-scalper/analysis?symbol=BTCUSDT."""

import hashlib

from backend.services.institutional_analysis import InstitutionalAnalysis

ALGORITHMS = (
    "vwap_reversion",
    "order_block_retest",
    "liquidity_sweep",
    "momentum_breakout",
    "range_scalp",
    "wyckoff_spring",
)


def candles(symbol: str, n: int = 30):
    """Deterministic 10s candles for a symbol (the market feed of this sample)."""
    seed = int(hashlib.sha256(symbol.encode()).hexdigest()[:8], 16)
    closes, volumes, price = [], [], 100.0 + seed % 900
    for i in range(n):
        step = ((seed >> (i % 24)) & 7) - 3.5
        price = round(price * (1 + step / 1000), 4)
        closes.append(price)
        volumes.append(500 + (seed >> (i % 20)) % 700)
    return closes, volumes


class AdvancedAlgorithmSelector:
    def select(self, analysis: InstitutionalAnalysis) -> str:
        # High manipulation risk rules out the breakout-style algorithms.
        if analysis.manipulation_risk > 0.6:
            return "range_scalp"
        if analysis.volume_spike > 1.5:
            return "liquidity_sweep"
        return "momentum_breakout" if analysis.trend > 0 else "vwap_reversion"


def analyze(symbol: str):
    closes, volumes = candles(symbol)
    analysis = InstitutionalAnalysis(closes, volumes)
    algorithm = AdvancedAlgorithmSelector().select(analysis)
    return 200, {
        "symbol": symbol,
        "timeframe": "10s",
        "algorithm": algorithm,
        "algorithms": list(ALGORITHMS),
        "manipulation_risk": analysis.manipulation_risk,
    }
