//! From a URL record (the output topic's JSON, or Avro with `output.format = "avro"`: told apart
//! by the first byte) to the webhook request body. Pure.
//!
//! Body (the original design's `send_webhook` fields, then extras):
//! `{"aepiot_url": urls[0], "device_id", "event_type", "timestamp": event_time, "regional_url", "urls"}`.
//! `timestamp` is the record's `event_time` (the time the event was judged at), not the sending
//! time: retries and redeliveries then carry the same body, byte for byte, and so the same
//! signature.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::core::avro_record;

/// A `success` record, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    pub device_id: String,
    /// The record's region (after fallback), for endpoints' `regions` filters.
    pub region: String,
    /// The JSON request body.
    pub body: Vec<u8>,
}

/// What to do with an output-topic record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A `success` record: deliver it.
    Deliver(WebhookRecord),
    /// A `cached` or `rate_limited` record (written with `emit_suppressed`): nothing to deliver.
    Skip,
}

#[derive(Deserialize)]
struct UrlRecord<'a> {
    #[serde(borrow)]
    device_id: Cow<'a, str>,
    #[serde(borrow, default)]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    region: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow, default)]
    urls: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    regional_url: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_time: Cow<'a, str>,
}

#[derive(Serialize)]
struct Body<'a> {
    aepiot_url: &'a str,
    device_id: &'a str,
    event_type: Option<&'a str>,
    timestamp: &'a str,
    regional_url: Option<&'a str>,
    urls: &'a [Cow<'a, str>],
}

/// Reads an output-topic record. An error means it is not a URL record (it is skipped, with a
/// warning: the output topic is only written by this program).
pub fn parse(payload: Option<&[u8]>) -> Result<Parsed, String> {
    let payload = payload.ok_or("empty record (tombstone)")?;
    // An Avro record becomes the JSON the other format would have written: one body either way.
    let decoded;
    let payload = if payload.first() == Some(&avro_record::MAGIC) {
        let mut json = Vec::new();
        avro_record::avro_to_json(payload, &mut json)
            .map_err(|e| format!("not an Avro URL record: {e}"))?;
        decoded = json;
        &decoded[..]
    } else {
        payload
    };
    let r: UrlRecord<'_> =
        serde_json::from_slice(payload).map_err(|e| format!("not a URL record: {e}"))?;
    if r.status != "success" {
        return Ok(Parsed::Skip);
    }
    let Some(first) = r.urls.first() else {
        return Err("a success record without urls".into());
    };
    let body = Body {
        aepiot_url: first,
        device_id: &r.device_id,
        event_type: r.event_type.as_deref(),
        timestamp: &r.event_time,
        regional_url: r.regional_url.as_deref(),
        urls: &r.urls,
    };
    Ok(Parsed::Deliver(WebhookRecord {
        body: serde_json::to_vec(&body).expect("a body serializes"),
        device_id: r.device_id.into_owned(),
        region: r.region.into_owned(),
    }))
}

/// The idempotency key of a URL record, sent as `webhook-id`: `<topic>-<partition>-<offset>`.
/// Stable across retries, redeliveries after a crash or rebalance, and instances; the same for
/// every endpoint (each receiver dedupes its own requests). The signature covers
/// `{id}.{timestamp}.{body}`, so the id must hold no `.` (Standard Webhooks): a topic's dots
/// become `~`, which no topic name holds, so ids stay distinct.
pub fn idempotency_key(topic: &str, partition: i32, offset: i64) -> String {
    format!("{}-{partition}-{offset}", topic.replace('.', "~"))
}

/// Whether an endpoint with the `regions` filter takes records of `region` (empty: all).
pub fn accepts(regions: &[String], region: &str) -> bool {
    regions.is_empty() || regions.iter().any(|r| r == region)
}

/// The lane of a device among `lanes`: a stable hash, so a device's records always share a lane
/// and go out in order.
pub fn lane_of(device_id: &str, lanes: usize) -> usize {
    (xxhash_rust::xxh3::xxh3_64(device_id.as_bytes()) % lanes.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = r#"{"device_id":"press-7","event_type":"temperature_alert","severity":"high","region":"europe","status":"success","urls":["https://aepiot.com/backlink.html?title=a","https://headlines-world.com/backlink.html?title=a"],"regional_url":"https://eu.aepiot.com/backlink.html?title=b","event_time":"2026-11-26T08:05:01.000Z","processed_at":"2026-11-26T08:05:01.012Z","source":{"topic":"in","partition":3,"offset":1042}}"#;

    #[test]
    fn an_avro_record_gives_the_body_of_its_json_twin_byte_for_byte() {
        use crate::core::record::{Source, UrlRecord};
        use crate::core::Decision;
        let urls = [
            "https://aepiot.com/backlink.html?title=a",
            "https://headlines-world.com/backlink.html?title=a",
        ];
        let record = UrlRecord {
            device_id: "press-7",
            event_type: Some("temperature_alert"),
            severity: Some("high"),
            region: "europe",
            status: Decision::Success,
            urls: Some(urls.iter().copied()),
            regional_url: Some("https://eu.aepiot.com/backlink.html?title=b"),
            urls_json_safe: true,
            event_time: "2026-11-26T08:05:01.000Z",
            processed_at: "2026-11-26T08:05:01.012Z",
            source: Some(Source::Kafka {
                topic: "in",
                partition: 3,
                offset: 1042,
            }),
        };
        let mut avro = Vec::new();
        record.encode_avro(42, &mut avro);
        assert_eq!(
            parse(Some(&avro)).unwrap(),
            parse(Some(SUCCESS.as_bytes())).unwrap()
        );
        let cached = UrlRecord {
            status: Decision::Cached,
            urls: None,
            regional_url: None,
            ..record
        };
        cached.encode_avro(42, &mut avro);
        assert_eq!(parse(Some(&avro)).unwrap(), Parsed::Skip);
        let err = parse(Some(&avro[..avro.len() - 1])).unwrap_err();
        assert!(err.starts_with("not an Avro URL record"), "{err}");
    }

    #[test]
    fn success_records_become_the_seed_body_plus_extras() {
        let Parsed::Deliver(r) = parse(Some(SUCCESS.as_bytes())).unwrap() else {
            panic!("not delivered")
        };
        assert_eq!(r.device_id, "press-7");
        assert_eq!(r.region, "europe");
        assert_eq!(
            std::str::from_utf8(&r.body).unwrap(),
            r#"{"aepiot_url":"https://aepiot.com/backlink.html?title=a","device_id":"press-7","event_type":"temperature_alert","timestamp":"2026-11-26T08:05:01.000Z","regional_url":"https://eu.aepiot.com/backlink.html?title=b","urls":["https://aepiot.com/backlink.html?title=a","https://headlines-world.com/backlink.html?title=a"]}"#
        );
    }

    #[test]
    fn escapes_and_null_event_types_survive() {
        let rec = r#"{"device_id":"d\"1\u00e9","event_type":null,"severity":null,"region":"global","status":"success","urls":["https://h/x?a=\u0026"],"regional_url":"https://g/y","event_time":"t","processed_at":"p"}"#;
        let Parsed::Deliver(r) = parse(Some(rec.as_bytes())).unwrap() else {
            panic!()
        };
        assert_eq!(r.device_id, "d\"1é");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["event_type"], serde_json::Value::Null);
        assert_eq!(v["device_id"], "d\"1é");
        assert_eq!(v["aepiot_url"], "https://h/x?a=&");
    }

    #[test]
    fn suppressed_records_are_skipped_and_garbage_is_an_error() {
        for status in ["cached", "rate_limited"] {
            let rec = format!(
                r#"{{"device_id":"d","event_type":"e","severity":null,"region":"global","status":"{status}","event_time":"t","processed_at":"p"}}"#
            );
            assert_eq!(parse(Some(rec.as_bytes())).unwrap(), Parsed::Skip);
        }
        assert!(parse(None).is_err());
        assert!(parse(Some(b"not json")).is_err());
        assert!(parse(Some(br#"{"device_id":"d"}"#)).is_err());
        let no_urls = r#"{"device_id":"d","event_type":"e","region":"global","status":"success","event_time":"t"}"#;
        assert!(parse(Some(no_urls.as_bytes())).is_err());
    }

    #[test]
    fn keys_filters_and_lanes() {
        assert_eq!(
            idempotency_key("aepiot-urls", 3, 1042),
            "aepiot-urls-3-1042"
        );
        assert_eq!(idempotency_key("plant.eu.urls", 0, 7), "plant~eu~urls-0-7");
        assert!(accepts(&[], "europe"));
        assert!(accepts(&["europe".into()], "europe"));
        assert!(!accepts(&["europe".into()], "global"));
        for lanes in [1, 2, 16, 1024] {
            for d in ["a", "press-7", "é"] {
                assert!(lane_of(d, lanes) < lanes);
                assert_eq!(lane_of(d, lanes), lane_of(d, lanes));
            }
        }
        // Devices spread over the lanes.
        let used: std::collections::HashSet<usize> = (0..1000)
            .map(|i| lane_of(&format!("dev-{i}"), 16))
            .collect();
        assert_eq!(used.len(), 16);
    }
}
