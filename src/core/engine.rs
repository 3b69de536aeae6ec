//! The per-event path: decode → rate limit → dedupe → build URLs → encode.
//!
//! An [`Engine`] belongs to one partition worker (or to the `process` command) and owns that
//! partition's device state and all scratch buffers, so the hot path takes no lock and, once warm,
//! allocates only for the rare escaped or non-string field.

use std::sync::Arc;

use super::error::RecordError;
use super::event::{parse_event, Event};
use super::limiter::{cache_key, Decision, Limits};
use super::record::{encode_json, DeadLetter, Source, UrlRecord};
use super::state::DeviceStates;
use super::time::write_rfc3339_ms;
use super::urls::{UrlBuilder, UrlSet, UrlSettings};

/// Settings shared by every engine of a process.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub urls: UrlSettings,
    pub limits: Limits,
    /// See [`DeviceStates::new`].
    pub state_grace_ms: i64,
    pub max_record_bytes: usize,
    pub max_dead_letter_payload_bytes: usize,
    /// Also write `cached` and `rate_limited` records (they are always counted).
    pub emit_suppressed: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            urls: UrlSettings::default(),
            limits: Limits::default(),
            state_grace_ms: 3_600_000,
            max_record_bytes: 1 << 20,
            max_dead_letter_payload_bytes: 64 << 10,
            emit_suppressed: false,
        }
    }
}

/// Built once from [`EngineSettings`], shared by every engine.
#[derive(Debug)]
pub struct Shared {
    pub settings: EngineSettings,
    pub urls: UrlBuilder,
}

impl Shared {
    pub fn new(settings: EngineSettings) -> Arc<Self> {
        Arc::new(Shared {
            urls: UrlBuilder::new(settings.urls.clone()),
            settings,
        })
    }
}

/// What one input record became. Borrowed slices live in the engine's buffers until the next call.
#[derive(Debug)]
pub enum Output<'a> {
    /// A URL record to write (always for `success`; for the others with `emit_suppressed`).
    Record {
        status: Decision,
        /// The encoded URL record.
        json: &'a [u8],
        /// Region after fallback: the output's Kafka key.
        region: &'a str,
        device_id: &'a str,
        event_type: Option<&'a str>,
        /// URLs generated (0 unless `success`).
        urls: usize,
    },
    /// `cached` or `rate_limited`, counted but not written.
    Suppressed {
        status: Decision,
        device_id: &'a str,
    },
    /// An invalid record: the encoded dead letter.
    DeadLetter {
        error: &'a RecordError,
        json: &'a [u8],
    },
}

impl Output<'_> {
    /// The device id of a valid event.
    pub fn device_id(&self) -> Option<&str> {
        match self {
            Output::Record { device_id, .. } | Output::Suppressed { device_id, .. } => {
                Some(device_id)
            }
            Output::DeadLetter { .. } => None,
        }
    }
}

/// Facts about a record that do not come from its payload.
#[derive(Debug, Clone, Copy)]
pub struct RecordMeta<'a> {
    /// The Kafka record timestamp, if any: the event time when the event has no `timestamp`.
    pub record_time_ms: Option<i64>,
    /// Wall clock: `processed_at`, and the event time of last resort.
    pub now_ms: i64,
    pub source: Option<Source<'a>>,
}

/// One partition's engine.
pub struct Engine {
    shared: Arc<Shared>,
    states: DeviceStates,
    set: UrlSet,
    json: Vec<u8>,
    device_id: String,
    event_type: String,
    error: Option<RecordError>,
    /// `processed_at` text for the millisecond it was last formatted.
    now_text: (i64, String),
    /// `event_time` text for the millisecond it was last formatted.
    event_text: (i64, String),
}

impl Engine {
    pub fn new(shared: Arc<Shared>) -> Self {
        let s = &shared.settings;
        let states = DeviceStates::new(s.limits, s.state_grace_ms);
        Engine {
            shared,
            states,
            set: UrlSet::default(),
            json: Vec::with_capacity(4096),
            device_id: String::new(),
            event_type: String::new(),
            error: None,
            now_text: (i64::MIN, String::new()),
            event_text: (i64::MIN, String::new()),
        }
    }

    pub fn states(&self) -> &DeviceStates {
        &self.states
    }

    pub fn states_mut(&mut self) -> &mut DeviceStates {
        &mut self.states
    }

    /// Processes one record's payload.
    pub fn process(&mut self, payload: Option<&[u8]>, meta: &RecordMeta<'_>) -> Output<'_> {
        format_cached(&mut self.now_text, meta.now_ms);
        match parse_event(payload, self.shared.settings.max_record_bytes) {
            Ok(event) => self.judge(&event, meta),
            Err(error) => self.reject(error, payload, payload.map_or(0, <[u8]>::len), meta),
        }
    }

    /// Makes a dead letter for a record rejected before parsing, e.g. a line too long to read
    /// whole: `payload` is then a prefix of an original of `original_len` bytes.
    pub fn reject(
        &mut self,
        error: RecordError,
        payload: Option<&[u8]>,
        original_len: usize,
        meta: &RecordMeta<'_>,
    ) -> Output<'_> {
        format_cached(&mut self.now_text, meta.now_ms);
        let error = self.error.insert(error);
        let letter = DeadLetter::new(
            error,
            payload,
            original_len,
            self.shared.settings.max_dead_letter_payload_bytes,
            &self.now_text.1,
            meta.source,
        );
        encode_json(&mut self.json, &letter);
        Output::DeadLetter {
            error,
            json: &self.json,
        }
    }

    /// Largest payload the engine accepts.
    pub fn max_record_bytes(&self) -> usize {
        self.shared.settings.max_record_bytes
    }

    fn judge(&mut self, event: &Event<'_>, meta: &RecordMeta<'_>) -> Output<'_> {
        let settings = &self.shared.settings;
        let event_ms = event
            .timestamp_ms
            .or(meta.record_time_ms)
            .unwrap_or(meta.now_ms);
        let key = cache_key(event.event_type.as_deref(), event.severity.as_deref());
        let (status, judged_at) = self
            .states
            .decide(&event.device_id, event_ms, key, meta.now_ms);

        // Copied out of the payload-borrowing event so the output can outlive it.
        self.device_id.clear();
        self.device_id.push_str(&event.device_id);
        self.event_type.clear();
        self.event_type
            .push_str(event.event_type.as_deref().unwrap_or_default());
        if status != Decision::Success && !settings.emit_suppressed {
            return Output::Suppressed {
                status,
                device_id: &self.device_id,
            };
        }
        let urls = status == Decision::Success;
        if urls {
            self.shared.urls.build(event, &mut self.set);
        }
        let region = self
            .shared
            .urls
            .region_name(self.shared.urls.region_index(event));
        format_cached(&mut self.event_text, judged_at);
        let record = UrlRecord {
            device_id: &event.device_id,
            event_type: event.event_type.as_deref(),
            severity: event.severity.as_deref(),
            region,
            status,
            urls: urls.then(|| self.set.urls()),
            regional_url: urls.then(|| self.set.regional()),
            urls_json_safe: self.set.json_safe(),
            event_time: &self.event_text.1,
            processed_at: &self.now_text.1,
            source: meta.source,
        };
        record.encode(&mut self.json);
        Output::Record {
            status,
            json: &self.json,
            region,
            device_id: &self.device_id,
            event_type: event
                .event_type
                .is_some()
                .then_some(self.event_type.as_str()),
            urls: if urls { self.set.urls().len() } else { 0 },
        }
    }
}

/// Makes `cache` hold the RFC 3339 text of `ms`, reusing its buffer.
fn format_cached(cache: &mut (i64, String), ms: i64) {
    if cache.0 != ms {
        cache.0 = ms;
        cache.1.clear();
        write_rfc3339_ms(&mut cache.1, ms);
    }
}
