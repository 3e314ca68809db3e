//! Latency samples and their percentiles.

use std::time::Duration;

/// Latency samples of one measurement.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    sorted: bool,
    values: Vec<Duration>,
}

impl Samples {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            sorted: true,
            values: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, d: Duration) {
        self.sorted = false;
        self.values.push(d);
    }

    pub fn extend(&mut self, other: Samples) {
        self.sorted = false;
        self.values.extend(other.values);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// The nearest-rank percentile `p` (0–100) in milliseconds; NaN without samples.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.values.is_empty() {
            return f64::NAN;
        }
        if !self.sorted {
            self.values.sort_unstable();
            self.sorted = true;
        }
        let n = self.values.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        let index = rank.clamp(1, n) - 1;
        self.values[index].as_secs_f64() * 1000.0
    }

    pub fn max_ms(&mut self) -> f64 {
        self.percentile_ms(100.0)
    }

    /// The sum of all samples.
    pub fn total(&self) -> Duration {
        self.values.iter().sum()
    }
}

/// Formats a number of milliseconds for a table.
pub fn ms(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

/// Formats a rate with thousands separators.
pub fn rate(v: f64) -> String {
    let digits = (v.round() as u64).to_string();
    let groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|group| std::str::from_utf8(group).unwrap_or("?"))
        .collect();
    groups.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut s = Samples::default();
        for i in 1..=100 {
            s.push(Duration::from_millis(i));
        }
        assert_eq!(s.percentile_ms(50.0), 50.0);
        assert_eq!(s.percentile_ms(99.0), 99.0);
        assert_eq!(s.max_ms(), 100.0);
        assert!(Samples::default().percentile_ms(50.0).is_nan());
    }

    #[test]
    fn rates_get_thousands_separators() {
        assert_eq!(rate(1234567.4), "1,234,567");
        assert_eq!(rate(999.0), "999");
        assert_eq!(rate(1000.0), "1,000");
    }
}
