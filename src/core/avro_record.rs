//! URL records in Avro (`output.format = "avro"`): the Confluent wire format (byte 0, the schema
//! id as 4 bytes big-endian, then the Avro binary encoding) of `schemas/url-record.avsc`, the URL
//! record schema derived from `schemas/url-record.schema.json` (tests/schemas.rs keeps the two
//! together). Pure: written into a reusable buffer like the JSON encoding, field for field.
//!
//! The encoder is written out for this one schema instead of going through a generic Avro
//! library's value tree: it runs once per output record, and the schema is fixed at build time.
//! Tests decode its bytes with `apache-avro` and with confluent-kafka's `AvroDeserializer`.

use super::limiter::Decision;
use super::record::{Source, UrlRecord};

/// The URL record's Avro schema, registered under `<output topic>-value` at start-up.
pub const URL_RECORD_AVSC: &str = include_str!("../../schemas/url-record.avsc");

/// The Confluent wire format's first byte.
pub const MAGIC: u8 = 0;

/// How URL records are written (`output.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordEncoding {
    /// JSON (`schemas/url-record.schema.json`).
    #[default]
    Json,
    /// Avro in the wire format, with the id the registry gave [`URL_RECORD_AVSC`].
    Avro { schema_id: u32 },
}

impl<'a, U: Iterator<Item = &'a str> + Clone> UrlRecord<'a, U> {
    /// Encodes into `out` (cleared first) in the wire format with `schema_id`, the id the registry
    /// gave [`URL_RECORD_AVSC`].
    pub fn encode_avro(&self, schema_id: u32, out: &mut Vec<u8>) {
        out.clear();
        out.push(MAGIC);
        out.extend_from_slice(&schema_id.to_be_bytes());
        string(out, self.device_id);
        opt_string(out, self.event_type);
        opt_string(out, self.severity);
        string(out, self.region);
        long(out, status_index(self.status));
        match &self.urls {
            None => long(out, 0),
            Some(urls) => {
                long(out, 1);
                // one block holding every URL (its count first), then the empty block that ends
                // the array
                let n = urls.clone().count();
                if n > 0 {
                    long(out, n as i64);
                    for url in urls.clone() {
                        string(out, url);
                    }
                }
                long(out, 0);
            }
        }
        opt_string(out, self.regional_url);
        string(out, self.event_time);
        string(out, self.processed_at);
        match self.source {
            None => long(out, 0),
            Some(Source::Kafka {
                topic,
                partition,
                offset,
            }) => {
                long(out, 1);
                string(out, topic);
                long(out, partition.into());
                long(out, offset);
            }
            Some(Source::Line { line }) => {
                long(out, 2);
                long(out, i64::try_from(line).unwrap_or(i64::MAX));
            }
        }
    }
}

/// The JSON encoding of a URL record in the wire format: the bytes [`UrlRecord::encode`] writes
/// for the same record, so whatever reads JSON URL records (the webhook service, the status page)
/// reads Avro ones too, unchanged. The schema id is not looked up: the output topic holds only
/// this program's records, in [`URL_RECORD_AVSC`]. `Err` says what does not decode.
pub fn avro_to_json(payload: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let body = match payload {
        [MAGIC, _, _, _, _, body @ ..] => body,
        _ => {
            return Err(
                "not in the Schema Registry wire format (magic byte 0, 4-byte schema id)".into(),
            )
        }
    };
    let mut r = Reader(body);
    let device_id = r.string("device_id")?;
    let event_type = r.opt_string("event_type")?;
    let severity = r.opt_string("severity")?;
    let region = r.string("region")?;
    let status = match r.long("status")? {
        0 => Decision::Success,
        1 => Decision::Cached,
        2 => Decision::RateLimited,
        i => return Err(format!("status: no symbol {i}")),
    };
    let urls = match r.long("urls")? {
        0 => None,
        1 => {
            let mut urls = Vec::new();
            loop {
                let n = r.long("urls")?;
                if n == 0 {
                    break;
                }
                // A negative count is followed by the block's size in bytes (the spec's form).
                if n < 0 {
                    r.long("urls")?;
                }
                for _ in 0..n.unsigned_abs() {
                    urls.push(r.string("urls")?);
                }
            }
            Some(urls)
        }
        i => return Err(format!("urls: no union branch {i}")),
    };
    let regional_url = r.opt_string("regional_url")?;
    let event_time = r.string("event_time")?;
    let processed_at = r.string("processed_at")?;
    let source = match r.long("source")? {
        0 => None,
        1 => Some(Source::Kafka {
            topic: r.string("source.topic")?,
            partition: i32::try_from(r.long("source.partition")?)
                .map_err(|_| "source.partition: out of the int range".to_string())?,
            offset: r.long("source.offset")?,
        }),
        2 => Some(Source::Line {
            line: u64::try_from(r.long("source.line")?)
                .map_err(|_| "source.line: negative".to_string())?,
        }),
        i => return Err(format!("source: no union branch {i}")),
    };
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the record", r.0.len()));
    }
    let record = UrlRecord {
        device_id,
        event_type,
        severity,
        region,
        status,
        urls_json_safe: false,
        urls: urls.as_ref().map(|u| u.iter().copied()),
        regional_url,
        event_time,
        processed_at,
        source,
    };
    record.encode(out);
    Ok(())
}

/// Reads Avro binary values off the front of a byte slice; every length is checked against what
/// is left, so a short or hostile record is an error, never a panic or a large allocation.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn long(&mut self, field: &str) -> Result<i64, String> {
        let mut z: u64 = 0;
        for i in 0..10 {
            let Some((&b, rest)) = self.0.split_first() else {
                return Err(format!("{field}: the record ends inside a number"));
            };
            self.0 = rest;
            z |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        Err(format!("{field}: a number longer than 10 bytes"))
    }

    fn string(&mut self, field: &str) -> Result<&'a str, String> {
        let n = self.long(field)?;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.0.len())
            .ok_or_else(|| format!("{field}: a string of {n} bytes, {} left", self.0.len()))?;
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        std::str::from_utf8(s).map_err(|e| format!("{field}: not UTF-8: {e}"))
    }

    fn opt_string(&mut self, field: &str) -> Result<Option<&'a str>, String> {
        match self.long(field)? {
            0 => Ok(None),
            1 => self.string(field).map(Some),
            i => Err(format!("{field}: no union branch {i}")),
        }
    }
}

/// The symbol's index in the schema's `Status` enum.
fn status_index(d: Decision) -> i64 {
    match d {
        Decision::Success => 0,
        Decision::Cached => 1,
        Decision::RateLimited => 2,
    }
}

/// An Avro `int` or `long`: zigzag, then a little-endian base-128 varint.
fn long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// An Avro `string`: its length in bytes, then its UTF-8.
fn string(out: &mut Vec<u8>, s: &str) {
    long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// `["null", "string"]`: branch 0 (null) or branch 1 and the string.
fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => long(out, 0),
        Some(s) => {
            long(out, 1);
            string(out, s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(
        urls: Option<std::iter::Copied<std::slice::Iter<'a, &'a str>>>,
        source: Option<Source<'a>>,
    ) -> UrlRecord<'a, std::iter::Copied<std::slice::Iter<'a, &'a str>>> {
        UrlRecord {
            device_id: "press-7",
            event_type: Some("temperature_alert"),
            severity: None,
            region: "europe",
            status: Decision::Success,
            regional_url: urls.is_some().then_some("https://eu.aepiot.com/b"),
            urls,
            urls_json_safe: true,
            event_time: "2026-11-26T08:05:01.000Z",
            processed_at: "2026-11-26T08:05:01.012Z",
            source,
        }
    }

    #[test]
    fn zigzag_varints_as_the_avro_spec_lists_them() {
        for (v, bytes) in [
            (0i64, &[0x00u8][..]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-2, &[0x03]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (
                i64::MAX,
                &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
            (
                i64::MIN,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            long(&mut out, v);
            assert_eq!(out, bytes, "{v}");
        }
    }

    #[test]
    fn the_wire_format_header_and_the_fields_in_schema_order() {
        let urls = ["https://aepiot.com/a", "https://x.com/b"];
        let r = record(
            Some(urls.iter().copied()),
            Some(Source::Kafka {
                topic: "in",
                partition: 3,
                offset: 1042,
            }),
        );
        let mut out = Vec::new();
        r.encode_avro(0x0102_0304, &mut out);
        let mut want = vec![0u8, 1, 2, 3, 4];
        let s = |w: &mut Vec<u8>, t: &str| {
            w.push((t.len() * 2) as u8);
            w.extend_from_slice(t.as_bytes());
        };
        s(&mut want, "press-7");
        want.push(2); // event_type: branch 1
        s(&mut want, "temperature_alert");
        want.push(0); // severity: null
        s(&mut want, "europe");
        want.push(0); // status: success
        want.extend_from_slice(&[2, 4]); // urls: branch 1, a block of 2
        s(&mut want, urls[0]);
        s(&mut want, urls[1]);
        want.push(0); // end of the array
        want.push(2);
        s(&mut want, "https://eu.aepiot.com/b");
        s(&mut want, "2026-11-26T08:05:01.000Z");
        s(&mut want, "2026-11-26T08:05:01.012Z");
        want.push(2); // source: KafkaSource
        s(&mut want, "in");
        want.push(6); // partition 3
        want.extend_from_slice(&[0xa4, 0x10]); // offset 1042
        assert_eq!(out, want);

        // No URLs, a line source, another status: the other branches.
        let r = UrlRecord {
            status: Decision::RateLimited,
            ..record(None, Some(Source::Line { line: 7 }))
        };
        r.encode_avro(1, &mut out);
        // header 5, device_id 1 + 7, event_type 1 + 1 + 17, severity 1, region 1 + 6
        let at = 5 + 8 + 19 + 1 + 7;
        // status rate_limited (symbol 2), urls null, regional_url null, event_time's length 24
        assert_eq!(out[at..at + 4], [4, 0, 0, 48]);
        assert_eq!(
            &out[out.len() - 2..],
            &[4, 14],
            "LineSource (branch 2), line 7"
        );
    }

    #[test]
    fn decoding_gives_the_json_encoding_of_the_same_record() {
        let texts = [
            "",
            "plain",
            "quote\" back\\ nl\n ctl\u{1}",
            "é 温度 🚀",
            &"x".repeat(300),
        ];
        let urls = [
            "https://aepiot.com/backlink.html?title=a%20b",
            "https://x.com/b",
        ];
        let sources = [
            None,
            Some(Source::Kafka {
                topic: "in",
                partition: i32::MAX,
                offset: i64::MAX,
            }),
            Some(Source::Kafka {
                topic: "odd \"t\"",
                partition: 0,
                offset: 0,
            }),
            Some(Source::Line { line: 1 }),
        ];
        let statuses = [Decision::Success, Decision::Cached, Decision::RateLimited];
        let (mut avro, mut json, mut back) = (Vec::new(), Vec::new(), Vec::new());
        let mut n = 0;
        for (i, &a) in texts.iter().enumerate() {
            for (j, source) in sources.iter().enumerate() {
                for (k, &status) in statuses.iter().enumerate() {
                    let list: &[&str] = match (i + j + k) % 3 {
                        0 => &urls,
                        1 => &urls[..1],
                        _ => &[],
                    };
                    let with_urls = (i + k) % 2 == 0;
                    let r = UrlRecord {
                        device_id: a,
                        event_type: (j % 2 == 0).then_some(a),
                        severity: (k != 1).then_some("high"),
                        region: a,
                        status,
                        urls: with_urls.then(|| list.iter().copied()),
                        regional_url: with_urls.then_some(a),
                        urls_json_safe: false,
                        event_time: a,
                        processed_at: "2026-11-26T08:05:01.012Z",
                        source: *source,
                    };
                    r.encode_avro(7, &mut avro);
                    r.encode(&mut json);
                    avro_to_json(&avro, &mut back).unwrap();
                    assert_eq!(
                        String::from_utf8_lossy(&back),
                        String::from_utf8_lossy(&json)
                    );
                    n += 1;
                }
            }
        }
        assert_eq!(n, texts.len() * sources.len() * statuses.len());
    }

    #[test]
    fn a_short_or_damaged_record_is_an_error_not_a_panic() {
        let urls = ["https://aepiot.com/a", "https://x.com/b"];
        let r = record(Some(urls.iter().copied()), Some(Source::Line { line: 3 }));
        let mut avro = Vec::new();
        r.encode_avro(7, &mut avro);
        let mut out = Vec::new();
        for cut in 0..avro.len() {
            assert!(
                avro_to_json(&avro[..cut], &mut out).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = avro.clone();
        longer.push(0);
        assert!(avro_to_json(&longer, &mut out)
            .unwrap_err()
            .contains("1 bytes after"));
        // a string length far past the end, and a number that never ends
        let mut bad = avro[..5].to_vec();
        bad.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert!(avro_to_json(&bad, &mut out)
            .unwrap_err()
            .contains("device_id"));
        let mut bad = avro[..5].to_vec();
        bad.extend_from_slice(&[0xff; 11]);
        assert!(avro_to_json(&bad, &mut out)
            .unwrap_err()
            .contains("longer than 10 bytes"));
        // JSON is not the wire format
        assert!(avro_to_json(b"{}", &mut out).is_err());
    }
}
