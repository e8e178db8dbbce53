//! Histograms as the report carries them: a percentile summary for people and the whole
//! histogram as base64 of hdrhistogram's V2 deflate encoding, so `merge` adds exact counts.

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::stats::{new_hist, Hist};

/// Percentiles of a latency histogram, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// 99.99th percentile.
    pub p9999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl Percentiles {
    /// The percentiles of `hist` (all zero when empty).
    pub fn of(hist: &Hist) -> Percentiles {
        if hist.is_empty() {
            return Percentiles::default();
        }
        let q = |p: f64| hist.value_at_quantile(p);
        Percentiles {
            count: hist.len(),
            mean_us: hist.mean(),
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            p9999_us: q(0.9999),
            max_us: hist.max(),
        }
    }
}

/// A histogram in the report (the default reads back as an empty histogram).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistReport {
    /// Its percentiles.
    #[serde(flatten)]
    pub percentiles: Percentiles,
    /// Base64 of the V2 deflate encoding.
    pub hdr: String,
}

impl HistReport {
    /// Summarises and encodes `hist`.
    pub fn of(hist: &Hist) -> HistReport {
        HistReport {
            percentiles: Percentiles::of(hist),
            hdr: encode(hist),
        }
    }

    /// The histogram back (empty when the encoding is unreadable).
    pub fn hist(&self) -> Hist {
        decode(&self.hdr).unwrap_or_else(new_hist)
    }
}

/// Base64 of the V2 deflate encoding of `hist`.
pub fn encode(hist: &Hist) -> String {
    let mut bytes = Vec::new();
    match V2DeflateSerializer::new().serialize(hist, &mut bytes) {
        Ok(_) => base64::engine::general_purpose::STANDARD.encode(bytes),
        Err(_) => String::new(),
    }
}

/// The histogram of a base64 V2 (deflate or not) encoding, with the report's bounds.
pub fn decode(text: &str) -> Option<Hist> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?;
    decode_bytes(&bytes)
}

/// The histogram of V2 (deflate or not) bytes, with the report's bounds.
pub fn decode_bytes(bytes: &[u8]) -> Option<Hist> {
    let read: Hist = Deserializer::new().deserialize(&mut &bytes[..]).ok()?;
    let mut hist = new_hist();
    hist.add(&read).ok()?;
    Some(hist)
}

/// `into += other`, clamping values past the bounds.
pub fn add(into: &mut Hist, other: &Hist) {
    if into.add(other).is_err() {
        for v in other.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::record;

    #[test]
    fn encoding_round_trips_exactly() {
        let mut h = new_hist();
        for v in [1, 10, 100, 1000, 10_000, 123_456, 59_000_000] {
            record(&mut h, v);
        }
        let r = HistReport::of(&h);
        assert_eq!(r.hist(), h);
        assert_eq!(r.percentiles.count, 7);
        assert_eq!(r.percentiles.max_us, h.max());
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = new_hist();
        for v in 1..=10_000u64 {
            record(&mut h, v);
        }
        let p = Percentiles::of(&h);
        assert!((4990..=5010).contains(&p.p50_us), "{}", p.p50_us);
        assert!((9890..=9910).contains(&p.p99_us), "{}", p.p99_us);
        assert!(p.max_us >= 10_000 && p.max_us <= 10_010);
        assert_eq!(Percentiles::of(&new_hist()), Percentiles::default());
    }

    #[test]
    fn garbage_decodes_to_nothing() {
        assert!(decode("not base64!").is_none());
        assert!(decode("AAAA").is_none());
    }
}
