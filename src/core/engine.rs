//! The per-event path: decode → rate limit → dedupe → build URLs → encode.
//!
//! An [`Engine`] belongs to one partition worker (or to the `process` command) and owns that
//! partition's device state and all scratch buffers, so the hot path takes no lock and, once warm,
//! allocates only for the rare escaped or non-string field.

use std::sync::Arc;

use super::avro_record::RecordEncoding;
use super::error::{ErrorKind, RecordError};
use super::event::{parse_event_with_hosts, Event};
use super::limiter::{cache_key, Decision, Limits};
use super::record::{encode_json, DeadLetter, Source, UrlRecord};
use super::state::{DeviceBudget, DeviceStates};
use super::time::{format_rfc3339_ms, write_rfc3339_ms};
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
    /// An event time further ahead of the wall clock than this is a dead letter (`invalid_field`,
    /// `timestamp`): one far-future event would otherwise move its device's clock there and rate
    /// limit it for good. 0 disables the check (`process`, which replays files in their own time).
    pub max_future_skew_ms: i64,
    /// Largest output the sink accepts (URL record plus its header values), in bytes: a larger
    /// URL record becomes an `output_too_large` dead letter, and a dead letter is cut to fit.
    pub max_output_bytes: usize,
    /// Most devices held by all the engines sharing these settings (one instance).
    pub max_devices: usize,
    /// Strict data residency (`unknown_region = "dead_letter"`): an event with no or an unknown
    /// `region` is a dead letter instead of falling back to `global`.
    pub unknown_region_dead_letter: bool,
    /// How URL records are encoded (`output.format`); dead letters are always JSON.
    pub record_encoding: RecordEncoding,
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
            max_future_skew_ms: 0,
            max_output_bytes: usize::MAX,
            max_devices: usize::MAX,
            unknown_region_dead_letter: false,
            record_encoding: RecordEncoding::Json,
        }
    }
}

/// Built once from [`EngineSettings`], shared by every engine.
#[derive(Debug)]
pub struct Shared {
    pub settings: EngineSettings,
    pub urls: UrlBuilder,
    /// Devices held by all engines, against `settings.max_devices`.
    pub budget: Arc<DeviceBudget>,
    /// Payloads up to this size cannot make an output over `max_output_bytes` (see
    /// [`Shared::new`]), so only larger ones pay for the check's state copy.
    safe_payload_bytes: usize,
}

impl Shared {
    pub fn new(settings: EngineSettings) -> Arc<Self> {
        // Each payload byte appears in an output at most: 3 times per URL (title, description,
        // link), percent-encoded (3 bytes), in every URL (the hosts' and the regional one), plus
        // the record's own JSON fields and headers (escaped, up to 6 bytes) twice.
        let urls = settings.urls.hosts.len() + 1;
        let expansion = 9 * urls + 12;
        Arc::new(Shared {
            urls: UrlBuilder::new(settings.urls.clone()),
            budget: DeviceBudget::new(settings.max_devices),
            safe_payload_bytes: settings.max_output_bytes.saturating_sub(4096) / expansion,
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
        /// Its index in the configured regions (which output topic the record goes to).
        region_index: usize,
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
        let states = DeviceStates::with_budget(s.limits, s.state_grace_ms, shared.budget.clone());
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
        self.process_as(payload, payload, None, meta)
    }

    /// Processes an event that came in another encoding (a Schema Registry record) and was
    /// decoded to `event`, its fields as a JSON object: judged by exactly the rules of a JSON
    /// record. A dead letter carries `payload`, the record as it came, and names `schema_id`.
    pub fn process_decoded(
        &mut self,
        event: &[u8],
        payload: &[u8],
        schema_id: u32,
        meta: &RecordMeta<'_>,
    ) -> Output<'_> {
        self.process_as(Some(event), Some(payload), Some(schema_id), meta)
    }

    fn process_as(
        &mut self,
        event: Option<&[u8]>,
        payload: Option<&[u8]>,
        schema_id: Option<u32>,
        meta: &RecordMeta<'_>,
    ) -> Output<'_> {
        format_cached(&mut self.now_text, meta.now_ms);
        let len = payload.map_or(0, <[u8]>::len);
        let s = &self.shared.settings;
        let judged = parse_event_with_hosts(event, s.max_record_bytes, &s.urls.link_hosts)
            .and_then(|e| self.admit(&e, meta).map(|ms| (e, ms)));
        match judged {
            Ok((e, event_ms)) => {
                let expands = event.map_or(0, <[u8]>::len);
                self.judge(&e, event_ms, payload, expands, meta)
            }
            Err(mut error) => {
                error.schema_id = schema_id;
                self.reject(error, payload, len, meta)
            }
        }
    }

    /// The checks of a parsed event that need the settings, before it touches any state: its
    /// region under strict residency, and its time. Returns the time it is judged at.
    fn admit(&self, event: &Event<'_>, meta: &RecordMeta<'_>) -> Result<i64, RecordError> {
        if self.shared.settings.unknown_region_dead_letter && !self.shared.urls.region_known(event)
        {
            let why = match event.region.as_deref() {
                None => "the event has no `region`".to_string(),
                Some(r) => format!("region {r:?} is not one of urls.regions"),
            };
            return Err(RecordError::field(
                ErrorKind::InvalidField,
                "region",
                format!("{why}; with unknown_region = \"dead_letter\" it is not sent anywhere"),
            ));
        }
        self.event_time(event, meta)
    }

    /// The time an event is judged at: its `timestamp`, else the record's, else the wall clock;
    /// refused when further ahead of the wall clock than `max_future_skew_ms`.
    fn event_time(&self, event: &Event<'_>, meta: &RecordMeta<'_>) -> Result<i64, RecordError> {
        let event_ms = event
            .timestamp_ms
            .or(meta.record_time_ms)
            .unwrap_or(meta.now_ms);
        let skew = self.shared.settings.max_future_skew_ms;
        let ahead = event_ms.saturating_sub(meta.now_ms);
        if skew > 0 && ahead > skew {
            let whose = if event.timestamp_ms.is_some() {
                "field `timestamp`"
            } else {
                "the Kafka record timestamp (the event has no `timestamp`)"
            };
            return Err(RecordError::field(
                ErrorKind::InvalidField,
                "timestamp",
                format!(
                    "{whose} {} is {} s ahead of the wall clock {}; at most {} s is accepted \
                     (input.max_future_skew_secs)",
                    format_rfc3339_ms(event_ms),
                    ahead / 1000,
                    format_rfc3339_ms(meta.now_ms),
                    skew / 1000
                ),
            ));
        }
        Ok(event_ms)
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
        let settings = &self.shared.settings;
        // A dead letter must always be writable: its payload is cut until it fits (JSON escaping
        // can make a payload up to 6 times its size, so the configured cut may not be enough).
        let mut max_payload = settings.max_dead_letter_payload_bytes;
        loop {
            let letter = DeadLetter::new(
                error,
                payload,
                original_len,
                max_payload,
                &self.now_text.1,
                meta.source,
            );
            encode_json(&mut self.json, &letter);
            if self.json.len() + error.message.len() <= settings.max_output_bytes
                || max_payload == 0
            {
                break;
            }
            max_payload /= 2;
        }
        Output::DeadLetter {
            error,
            json: &self.json,
        }
    }

    /// Largest payload the engine accepts.
    pub fn max_record_bytes(&self) -> usize {
        self.shared.settings.max_record_bytes
    }

    /// `expands`: the size of the event's text, which bounds its URL record's.
    fn judge(
        &mut self,
        event: &Event<'_>,
        event_ms: i64,
        payload: Option<&[u8]>,
        expands: usize,
        meta: &RecordMeta<'_>,
    ) -> Output<'_> {
        let shared = self.shared.clone();
        let key = cache_key(event.event_type.as_deref(), event.severity.as_deref());
        let len = payload.map_or(0, <[u8]>::len);
        // A large payload may make a URL record the sink refuses: keep the device's state to put
        // it back, so an event that yields no URL record does not use up a URL set.
        let before = (expands > shared.safe_payload_bytes)
            .then(|| self.states.get(&event.device_id).cloned());
        let (status, judged_at) = self
            .states
            .decide(&event.device_id, event_ms, key, meta.now_ms);
        let settings = &self.shared.settings;

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
        let region_index = shared.urls.region_index(event);
        format_cached(&mut self.event_text, judged_at);
        // Scoped: the record borrows the URL set, which a dead letter below must not meet.
        {
            let record = UrlRecord {
                device_id: &event.device_id,
                event_type: event.event_type.as_deref(),
                severity: event.severity.as_deref(),
                region: shared.urls.region_name(region_index),
                status,
                urls: urls.then(|| self.set.urls()),
                regional_url: urls.then(|| self.set.regional()),
                urls_json_safe: self.set.json_safe(),
                event_time: &self.event_text.1,
                processed_at: &self.now_text.1,
                source: meta.source,
            };
            match shared.settings.record_encoding {
                RecordEncoding::Json => record.encode(&mut self.json),
                RecordEncoding::Avro { schema_id } => record.encode_avro(schema_id, &mut self.json),
            }
        }
        let size = self.json.len() + event.device_id.len() + self.event_type.len();
        let max_output_bytes = shared.settings.max_output_bytes;
        if let Some(before) = before.filter(|_| size > max_output_bytes) {
            match before {
                Some(state) => self.states.restore(&event.device_id, state),
                None => self.states.remove(&event.device_id),
            }
            let error = RecordError::new(
                ErrorKind::OutputTooLarge,
                format!(
                    "the URL record of this event would be {size} bytes, over the \
                     {max_output_bytes} bytes the output topic and the producer accept; no URL set \
                     was counted for the device"
                ),
            );
            return self.reject(error, payload, len, meta);
        }
        Output::Record {
            status,
            json: &self.json,
            region: self.shared.urls.region_name(region_index),
            region_index,
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
