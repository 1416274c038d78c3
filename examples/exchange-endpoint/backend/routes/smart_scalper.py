"""Smart Scalper: GET /api/smart-scalper/analysis?symbol=BTCUSDT (the selected
algorithm) and GET /api/smart-scalper/algorithms (each algorithm's health)."""

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


# Each algorithm's entry signal. The breakout-style ones weigh the
# manipulation risk of the move (DL-033); the mean-reversion ones do not.
def _vwap_reversion(a: InstitutionalAnalysis) -> str:
    mean = sum(a.closes) / len(a.closes)
    return "long" if a.closes[-1] < mean else "short"


def _order_block_retest(a: InstitutionalAnalysis) -> str:
    return "wait" if a.manipulation_risk > 0.5 else ("long" if a.trend > 0 else "short")


def _liquidity_sweep(a: InstitutionalAnalysis) -> str:
    risk = a.manipulation_risk
    return "long" if a.volume_spike > 1.5 and risk < 0.7 else "wait"


def _momentum_breakout(a: InstitutionalAnalysis) -> str:
    risk = a.manipulation_risk
    return "long" if a.trend > 0 and risk < 0.6 else "wait"


def _range_scalp(a: InstitutionalAnalysis) -> str:
    low, high = min(a.closes), max(a.closes)
    return "long" if a.closes[-1] - low < (high - low) / 3 else "short"


def _wyckoff_spring(a: InstitutionalAnalysis) -> str:
    risk = a.manipulation_risk
    spring = a.closes[-1] <= min(a.closes[:-1]) * 1.001
    return "long" if spring and risk < 0.4 else "wait"


SIGNALS = {
    "vwap_reversion": _vwap_reversion,
    "order_block_retest": _order_block_retest,
    "liquidity_sweep": _liquidity_sweep,
    "momentum_breakout": _momentum_breakout,
    "range_scalp": _range_scalp,
    "wyckoff_spring": _wyckoff_spring,
}


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


def algorithms(symbol: str):
    """Each algorithm run on the symbol's candles: up, or down with its error.
    The monitoring plan rolls back when more than 2 are down."""
    analysis = InstitutionalAnalysis(*candles(symbol))
    report = []
    for name in ALGORITHMS:
        try:
            report.append({"name": name, "status": "up", "signal": SIGNALS[name](analysis)})
        except Exception as e:  # an algorithm crashing is what this reports
            report.append({"name": name, "status": "down", "error": f"{type(e).__name__}: {e}"})
    down = sum(1 for a in report if a["status"] == "down")
    return 200, {
        "symbol": symbol,
        "algorithms": report,
        "down": down,
        "available_percent": round(100 * (len(report) - down) / len(report), 1),
    }
