//! The compact binary form of a device's state, as written to the state changelog.
//!
//! Little-endian, fixed width, versioned:
//! `v=1 | base_ms i64 | clock u32 | hits n u8 | n × u32 | cache m u8 | m × (key u64, at u32)`.
//! A device with one success and one cache entry is 31 bytes; the most it can be with the default
//! limits (10 hits, a handful of cache entries) is well under 200. `seen` (wall-clock bookkeeping
//! for expiry) is not written: a restored device counts as just seen.

use smallvec::SmallVec;

use super::limiter::{CacheEntry, DeviceState};

const VERSION: u8 = 1;

/// Why a changelog value could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("unknown state format version {0}")]
    Version(u8),
    #[error("state record truncated")]
    Truncated,
}

pub fn encode(state: &DeviceState, out: &mut Vec<u8>) {
    out.clear();
    out.push(VERSION);
    out.extend_from_slice(&state.base_ms.to_le_bytes());
    out.extend_from_slice(&state.clock.to_le_bytes());
    // At most 255 entries of each kind are written: more than any sane limit configures.
    let hits = &state.hits[state.hits.len().saturating_sub(255)..];
    out.push(hits.len() as u8);
    for h in hits {
        out.extend_from_slice(&h.to_le_bytes());
    }
    let cache = &state.cache[..state.cache.len().min(255)];
    out.push(cache.len() as u8);
    for e in cache {
        out.extend_from_slice(&e.key.to_le_bytes());
        out.extend_from_slice(&e.at.to_le_bytes());
    }
}

pub fn decode(bytes: &[u8]) -> Result<DeviceState, SnapshotError> {
    let mut r = Reader(bytes);
    let version = r.take::<1>()?[0];
    if version != VERSION {
        return Err(SnapshotError::Version(version));
    }
    let base_ms = i64::from_le_bytes(r.take()?);
    let clock = u32::from_le_bytes(r.take()?);
    let n = r.take::<1>()?[0] as usize;
    let mut hits = SmallVec::with_capacity(n);
    for _ in 0..n {
        hits.push(u32::from_le_bytes(r.take()?));
    }
    let m = r.take::<1>()?[0] as usize;
    let mut cache = SmallVec::with_capacity(m);
    for _ in 0..m {
        let key = u64::from_le_bytes(r.take()?);
        let at = u32::from_le_bytes(r.take()?);
        cache.push(CacheEntry { key, at });
    }
    Ok(DeviceState {
        base_ms,
        clock,
        seen: 0,
        hits,
        cache,
    })
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        if self.0.len() < N {
            return Err(SnapshotError::Truncated);
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        Ok(head.try_into().expect("length checked"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::limiter::{cache_key, Limits};

    #[test]
    fn round_trips_and_stays_compact() {
        let limits = Limits::default();
        let mut s = DeviceState::new(1_795_680_000_000);
        s.advance(1_795_680_000_500, &limits);
        s.decide(cache_key(Some("temp"), None), &limits);
        let mut buf = Vec::new();
        encode(&s, &mut buf);
        assert_eq!(buf.len(), 31);
        assert_eq!(decode(&buf).unwrap(), s);
        for i in 1..20 {
            s.advance(1_795_680_000_500 + i * 1000, &limits);
            s.decide(cache_key(Some(&i.to_string()), None), &limits);
        }
        encode(&s, &mut buf);
        assert_eq!(decode(&buf).unwrap(), s);
        assert!(buf.len() < 200);
        assert_eq!(decode(&buf[..buf.len() - 1]), Err(SnapshotError::Truncated));
        assert_eq!(decode(&[9]), Err(SnapshotError::Version(9)));
    }
}
