//! Baseline statistics: what each probe looked like before the change.

use serde::{Deserialize, Serialize};

use crate::oplog::SampleRow;
use crate::plan::rule::{Agg, Field};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BaselineStats {
    pub count: usize,
    pub error_rate: f64,
    pub latency_median: Option<f64>,
    pub latency_p95: Option<f64>,
    pub latency_mean: Option<f64>,
    pub size_mean: Option<f64>,
}

impl BaselineStats {
    pub fn from_samples(samples: &[SampleRow]) -> Self {
        let count = samples.len();
        let failed = samples.iter().filter(|s| !s.ok).count();
        let lat: Vec<f64> = samples.iter().filter_map(|s| s.latency_ms).collect();
        let sizes: Vec<f64> = samples.iter().filter_map(|s| s.size.map(|v| v as f64)).collect();
        BaselineStats {
            count,
            error_rate: if count == 0 { 0.0 } else { failed as f64 / count as f64 },
            latency_median: aggregate(&lat, Agg::P50),
            latency_p95: aggregate(&lat, Agg::P95),
            latency_mean: aggregate(&lat, Agg::Mean),
            size_mean: aggregate(&sizes, Agg::Mean),
        }
    }

    /// The baseline value a rule on `field.agg` compares with.
    pub fn value(&self, field: Field, agg: Agg) -> Option<f64> {
        match field {
            Field::ErrorRate => Some(self.error_rate),
            Field::Latency => match agg {
                Agg::P95 | Agg::P99 | Agg::P90 | Agg::Max => self.latency_p95,
                Agg::Mean => self.latency_mean,
                _ => self.latency_median,
            },
            Field::Size => self.size_mean,
            Field::Up => Some(1.0 - self.error_rate),
            Field::Status | Field::ConsecutiveFailures => None,
        }
    }
}

/// Folds values with `agg`; percentiles by nearest rank.
pub fn aggregate(values: &[f64], agg: Agg) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let pct = |p: f64| {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    };
    Some(match agg {
        Agg::Last => *values.last()?,
        Agg::Mean => values.iter().sum::<f64>() / values.len() as f64,
        Agg::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        Agg::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Agg::P50 => pct(0.50),
        Agg::P90 => pct(0.90),
        Agg::P95 => pct(0.95),
        Agg::P99 => pct(0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(aggregate(&v, Agg::P50), Some(50.0));
        assert_eq!(aggregate(&v, Agg::P95), Some(95.0));
        assert_eq!(aggregate(&v, Agg::Max), Some(100.0));
        assert_eq!(aggregate(&v, Agg::Mean), Some(50.5));
        assert_eq!(aggregate(&[], Agg::Mean), None);
        assert_eq!(aggregate(&[3.0], Agg::P99), Some(3.0));
    }
}
