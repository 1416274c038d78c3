"""Institutional order-flow analysis the Smart Scalper algorithms select on."""


class InstitutionalAnalysis:
    def __init__(self, closes: list, volumes: list):
        self.closes = closes
        self.volumes = volumes
        mean_volume = sum(volumes) / len(volumes)
        self.volume_spike = max(volumes) / mean_volume
        self.trend = (closes[-1] - closes[0]) / closes[0]
        self.liquidity_score = round(min(1.0, mean_volume / 1000.0), 4)
