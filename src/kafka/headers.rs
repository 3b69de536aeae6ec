//! The Kafka headers of URL records and dead letters: their names in one place, for the processor,
//! the webhook service and the tests.

use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};

pub const STATUS: &str = "aepiot.status";
pub const DEVICE_ID: &str = "aepiot.device_id";
pub const EVENT_TYPE: &str = "aepiot.event_type";
pub const ERROR_KIND: &str = "aepiot.error.kind";
pub const ERROR_MESSAGE: &str = "aepiot.error.message";
pub const SOURCE_TOPIC: &str = "aepiot.source.topic";
pub const SOURCE_PARTITION: &str = "aepiot.source.partition";
pub const SOURCE_OFFSET: &str = "aepiot.source.offset";
/// Prefix of the input record's own headers, carried on its dead letter in their order (a header
/// `h` becomes `aepiot.input.header.h`), so `dead-letters replay` can give them back.
pub const INPUT_HEADER_PREFIX: &str = "aepiot.input.header.";
/// What a dead letter's payload holds when it is not the input record: `url_record` (the URL
/// record the broker refused). Absent: the input's payload.
pub const DEAD_LETTER_PAYLOAD: &str = "aepiot.dead_letter.payload";
/// The value of [`DEAD_LETTER_PAYLOAD`] on a dead letter carrying the refused URL record.
pub const PAYLOAD_URL_RECORD: &str = "url_record";
/// On a record `dead-letters replay` produced: the dead letter it came from,
/// `<topic>-<partition>-<offset>`.
pub const REPLAYED_FROM: &str = "aepiot.replayed_from";

/// A URL record's headers: what consumers filter on without parsing the value.
pub fn url_record(status: &str, device_id: &str, event_type: Option<&str>) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(3)
        .insert(Header {
            key: STATUS,
            value: Some(status),
        })
        .insert(Header {
            key: DEVICE_ID,
            value: Some(device_id),
        });
    if let Some(t) = event_type {
        headers = headers.insert(Header {
            key: EVENT_TYPE,
            value: Some(t),
        });
    }
    headers
}

/// A dead letter's headers: why, and where its input came from.
pub fn dead_letter(
    kind: &str,
    message: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> OwnedHeaders {
    let (partition, offset) = (partition.to_string(), offset.to_string());
    OwnedHeaders::new_with_capacity(5)
        .insert(Header {
            key: ERROR_KIND,
            value: Some(kind),
        })
        .insert(Header {
            key: ERROR_MESSAGE,
            value: Some(message),
        })
        .insert(Header {
            key: SOURCE_TOPIC,
            value: Some(topic),
        })
        .insert(Header {
            key: SOURCE_PARTITION,
            value: Some(partition.as_str()),
        })
        .insert(Header {
            key: SOURCE_OFFSET,
            value: Some(offset.as_str()),
        })
}

/// `headers` with the input record's headers appended under [`INPUT_HEADER_PREFIX`], in order
/// (repeated names and null values kept).
pub fn with_input_headers(mut headers: OwnedHeaders, input: &BorrowedHeaders) -> OwnedHeaders {
    for h in input.iter() {
        let key = format!("{INPUT_HEADER_PREFIX}{}", h.key);
        headers = headers.insert(Header {
            key: &key,
            value: h.value,
        });
    }
    headers
}
