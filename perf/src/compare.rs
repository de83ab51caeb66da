//! `compare`: run one workload against two brokers in alternation (A B A B …) and report each
//! figure's median for both and the ratio B / A.
//!
//! Alternating rather than "all of A, then all of B" spreads slow drifts of the machine (page
//! cache, thermal, noisy neighbours) evenly over both sides; medians ignore one bad round.

use serde::{Deserialize, Serialize};

use crate::result::RunResult;

/// Most rounds (each round is one run against each broker).
pub const MAX_ROUNDS: u32 = 100;

/// Reads one figure out of a run result.
pub type Extractor = fn(&RunResult) -> f64;

/// The figures compared, in table order: (name, extractor, higher is better).
pub const FIGURES: [(&str, Extractor, bool); 8] = [
    (
        "msgs_per_s",
        |r| r.measure().map_or(0.0, |m| m.msgs_per_s),
        true,
    ),
    (
        "mb_per_s",
        |r| r.measure().map_or(0.0, |m| m.mb_per_s),
        true,
    ),
    (
        "latency_ms.p50",
        |r| r.measure().map_or(0.0, |m| m.latency_ms.p50),
        false,
    ),
    (
        "latency_ms.p99",
        |r| r.measure().map_or(0.0, |m| m.latency_ms.p99),
        false,
    ),
    (
        "latency_ms.p999",
        |r| r.measure().map_or(0.0, |m| m.latency_ms.p999),
        false,
    ),
    (
        "e2e_latency_ms.p50",
        |r| r.measure().map_or(0.0, |m| m.e2e_latency_ms.p50),
        false,
    ),
    (
        "e2e_latency_ms.p99",
        |r| r.measure().map_or(0.0, |m| m.e2e_latency_ms.p99),
        false,
    ),
    (
        "broker_cpu_cores",
        |r| r.broker.as_ref().map_or(0.0, |b| b.cpu_cores),
        false,
    ),
];

/// One compared figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FigureComparison {
    pub figure: String,
    pub a_median: f64,
    pub b_median: f64,
    /// b_median / a_median (0 when a_median is 0).
    pub ratio_b_over_a: f64,
    pub higher_is_better: bool,
    pub a_values: Vec<f64>,
    pub b_values: Vec<f64>,
}

/// The `compare` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub rounds: u32,
    pub figures: Vec<FigureComparison>,
}

/// Median of `values` (mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Builds the comparison from the per-round results of A and B.
pub fn compare(a: &str, b: &str, a_runs: &[RunResult], b_runs: &[RunResult]) -> Comparison {
    let figures = FIGURES
        .iter()
        .map(|(name, f, higher)| {
            let a_values: Vec<f64> = a_runs.iter().map(f).collect();
            let b_values: Vec<f64> = b_runs.iter().map(f).collect();
            let a_median = median(&a_values);
            let b_median = median(&b_values);
            FigureComparison {
                figure: (*name).to_string(),
                a_median,
                b_median,
                ratio_b_over_a: if a_median > 0.0 {
                    b_median / a_median
                } else {
                    0.0
                },
                higher_is_better: *higher,
                a_values,
                b_values,
            }
        })
        .collect();
    Comparison {
        a: a.to_string(),
        b: b.to_string(),
        rounds: a_runs.len().min(b_runs.len()) as u32,
        figures,
    }
}

impl Comparison {
    /// Human-readable table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "compare over {} rounds (medians): A = {}, B = {}",
            self.rounds, self.a, self.b
        );
        let _ = writeln!(
            out,
            "{:<20} {:>14} {:>14} {:>8}  better",
            "figure", "A", "B", "B/A"
        );
        for f in &self.figures {
            let _ = writeln!(
                out,
                "{:<20} {:>14.3} {:>14.3} {:>8}  {}",
                f.figure,
                f.a_median,
                f.b_median,
                // No ratio without a figure for A (e.g. broker CPU without --broker-pids).
                if f.a_median > 0.0 {
                    format!("{:.3}", f.ratio_b_over_a)
                } else {
                    "n/a".to_string()
                },
                if f.higher_is_better {
                    "higher"
                } else {
                    "lower"
                }
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::tests::sample_result;

    #[test]
    fn median_handles_odd_even_and_empty() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[f64::NAN, 5.0]), 5.0);
    }

    #[test]
    fn ratios_use_medians_so_one_outlier_does_not_matter() {
        let with = |msgs: f64| {
            let mut r = sample_result();
            r.phases.get_mut("measure").unwrap().msgs_per_s = msgs;
            r
        };
        let a = vec![with(100.0), with(102.0), with(5.0)];
        let b = vec![with(200.0), with(204.0), with(198.0)];
        let c = compare("a:1", "b:1", &a, &b);
        let f = &c.figures[0];
        assert_eq!(f.figure, "msgs_per_s");
        assert_eq!((f.a_median, f.b_median), (100.0, 200.0));
        assert!((f.ratio_b_over_a - 2.0).abs() < 1e-12);
        assert_eq!(c.rounds, 3);
        assert!(c.table().contains("msgs_per_s"));
        // Same broker on both sides: every ratio is exactly 1 for identical results.
        let same = compare("a", "a", &a, &a);
        assert!(same
            .figures
            .iter()
            .filter(|f| f.a_median > 0.0)
            .all(|f| f.ratio_b_over_a == 1.0));
    }
}
