//! The Kafka headers of URL records and dead letters: their names in one place, for the processor,
//! the webhook service and the tests.

use rdkafka::message::{Header, OwnedHeaders};

pub const STATUS: &str = "aepiot.status";
pub const DEVICE_ID: &str = "aepiot.device_id";
pub const EVENT_TYPE: &str = "aepiot.event_type";
pub const ERROR_KIND: &str = "aepiot.error.kind";
pub const ERROR_MESSAGE: &str = "aepiot.error.message";
pub const SOURCE_TOPIC: &str = "aepiot.source.topic";
pub const SOURCE_PARTITION: &str = "aepiot.source.partition";
pub const SOURCE_OFFSET: &str = "aepiot.source.offset";

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
