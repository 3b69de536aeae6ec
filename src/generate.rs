//! Synthetic device events for `simulate`, `demo` and the benchmarks. Pure and seeded: the same
//! seed gives the same events, so a benchmark or a failing test can be replayed.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::core::time::format_rfc3339_ms;

/// What kind of fleet to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Thousands of machines in a few plants; bursts from busy machines; a few event types.
    Factory,
    /// Up to millions of sparse sensors; each rarely reports.
    City,
}

const FACTORY_TYPES: [&str; 4] = [
    "temperature_alert",
    "vibration_anomaly",
    "pressure_drop",
    "door_open",
];
const CITY_TYPES: [&str; 4] = [
    "parking_occupancy",
    "air_quality",
    "traffic_count",
    "streetlight_fault",
];
const SEVERITIES: [&str; 4] = ["low", "normal", "high", "critical"];
const REGIONS: [&str; 4] = ["europe", "north_america", "asia_pacific", "global"];
/// Words of the padding text: as compressible as prose, unlike a repeated sentence.
const WORDS: [&str; 32] = [
    "north",
    "gate",
    "sensor",
    "cabinet",
    "pump",
    "valve",
    "level",
    "floor",
    "east",
    "wing",
    "inspection",
    "due",
    "after",
    "maintenance",
    "replaced",
    "battery",
    "signal",
    "weak",
    "near",
    "loading",
    "dock",
    "bay",
    "rooftop",
    "unit",
    "cooling",
    "line",
    "west",
    "corridor",
    "panel",
    "reading",
    "stable",
    "since",
];

/// An endless, seeded stream of events.
pub struct Generator {
    profile: Profile,
    devices: u64,
    invalid_ratio: f64,
    rng: SmallRng,
    /// Factory bursts: the device currently bursting and how many events it has left.
    burst: Option<(u64, u32)>,
    /// Pad valid events to about this many bytes (0: their natural size, ~200 B).
    event_bytes: usize,
}

/// One generated record: Kafka key (the device id) and payload.
pub struct Generated {
    pub key: String,
    pub payload: Vec<u8>,
    pub valid: bool,
}

#[derive(Serialize)]
struct Event<'a> {
    device_id: &'a str,
    event_type: &'a str,
    severity: &'a str,
    location: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
    value: f64,
    timestamp: String,
    region: &'a str,
}

impl Generator {
    pub fn new(profile: Profile, devices: u64, seed: u64, invalid_ratio: f64) -> Self {
        Generator {
            profile,
            devices: devices.max(1),
            invalid_ratio,
            rng: SmallRng::seed_from_u64(seed),
            burst: None,
            event_bytes: 0,
        }
    }

    /// Valid events padded to about `bytes` (a long `location` and a `description` of words),
    /// for the benchmarks' event-size curve; smaller than the natural size changes nothing.
    pub fn with_event_bytes(mut self, bytes: usize) -> Self {
        self.event_bytes = bytes;
        self
    }

    /// About `bytes` of words.
    fn words(&mut self, bytes: usize) -> String {
        let mut text = String::with_capacity(bytes + 16);
        while text.len() < bytes {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(WORDS[self.rng.random_range(0..WORDS.len())]);
        }
        text
    }

    fn device(&mut self) -> u64 {
        match self.profile {
            Profile::City => self.rng.random_range(0..self.devices),
            Profile::Factory => match self.burst {
                Some((d, left)) if left > 0 => {
                    self.burst = Some((d, left - 1));
                    d
                }
                _ => {
                    let d = self.rng.random_range(0..self.devices);
                    if self.rng.random_bool(0.02) {
                        self.burst = Some((d, self.rng.random_range(5..40)));
                    }
                    d
                }
            },
        }
    }

    /// The next event, stamped with `now_ms`.
    pub fn next(&mut self, now_ms: i64) -> Generated {
        let d = self.device();
        let key = match self.profile {
            Profile::Factory => format!("machine-{d:06}"),
            Profile::City => format!("sensor-{d:07}"),
        };
        if self.invalid_ratio > 0.0 && self.rng.random_bool(self.invalid_ratio.min(1.0)) {
            let payload: Vec<u8> = match self.rng.random_range(0..4) {
                0 => b"not json at all".to_vec(),
                1 => format!(
                    "{{\"event_type\":\"temperature_alert\",\"note\":\"no device id for {key}\"}}"
                )
                .into_bytes(),
                2 => b"[1,2,3]".to_vec(),
                _ => vec![0xff, 0xfe, b'{'],
            };
            return Generated {
                key,
                payload,
                valid: false,
            };
        }
        let (types, region) = match self.profile {
            Profile::Factory => (&FACTORY_TYPES, REGIONS[(d % 3) as usize]),
            Profile::City => (&CITY_TYPES, REGIONS[(d % 4) as usize]),
        };
        let event = Event {
            device_id: &key,
            event_type: types[self.rng.random_range(0..types.len())],
            severity: SEVERITIES[self.rng.random_range(0..4)],
            location: match self.profile {
                Profile::Factory => format!("Plant {} / Line {}", d % 7, d % 5),
                Profile::City => format!("District {} / Block {}", d % 23, d % 101),
            },
            description: String::new(),
            value: (self.rng.random_range(0..100_000) as f64) / 100.0,
            timestamp: format_rfc3339_ms(now_ms),
            region,
        };
        let mut payload = serde_json::to_vec(&event).expect("events serialize");
        // `,"description":""` and the space between the location and its padding.
        let missing = self.event_bytes.saturating_sub(payload.len() + 18);
        if missing > 0 {
            let mut event = event;
            let location = self.words(missing / 4);
            event.location = format!("{} {location}", event.location);
            event.description = self.words(missing - missing / 4);
            payload = serde_json::to_vec(&event).expect("events serialize");
        }
        Generated {
            key,
            payload,
            valid: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_streams_repeat_and_are_valid_events() {
        let mut a = Generator::new(Profile::Factory, 100, 7, 0.1);
        let mut b = Generator::new(Profile::Factory, 100, 7, 0.1);
        let mut invalid = 0;
        for _ in 0..1000 {
            let (x, y) = (a.next(0), b.next(0));
            assert_eq!(x.payload, y.payload);
            let parsed = crate::core::event::parse_event(Some(&x.payload), 1 << 20);
            assert_eq!(parsed.is_ok(), x.valid);
            if let Ok(e) = parsed {
                assert_eq!(e.device_id, x.key);
            } else {
                invalid += 1;
            }
        }
        assert!((50..150).contains(&invalid), "{invalid}");
    }

    #[test]
    fn padded_events_are_about_the_size_asked_and_valid() {
        for bytes in [2_000, 20_000] {
            let mut g = Generator::new(Profile::City, 100, 3, 0.0).with_event_bytes(bytes);
            for _ in 0..50 {
                let x = g.next(0);
                let len = x.payload.len();
                assert!(len >= bytes && len < bytes + 32, "{len} bytes for {bytes}");
                let e = crate::core::event::parse_event(Some(&x.payload), 1 << 20).unwrap();
                assert!(e.description.is_some_and(|d| d.len() > bytes / 2));
            }
        }
        // Unpadded: no description, as before.
        let x = Generator::new(Profile::City, 100, 3, 0.0).next(0);
        assert!(!String::from_utf8(x.payload)
            .unwrap()
            .contains("description"));
    }
}
