//! W3C trace context in Kafka headers: reading a record's `traceparent`/`tracestate` (parsed by
//! the SDK's `TraceContextPropagator`), and writing an output's.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceFlags};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};

/// The W3C header names, as Kafka clients (OpenTelemetry's instrumentations) write them.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Whether `headers` hold a `traceparent`: a scan of the names, nothing parsed.
pub fn has_traceparent(headers: &BorrowedHeaders) -> bool {
    headers.iter().any(|h| h.key == TRACEPARENT)
}

/// The remote parent in `headers` (an empty context when absent or invalid).
pub fn extract(propagator: &TraceContextPropagator, headers: &BorrowedHeaders) -> Context {
    propagator.extract_with_context(&Context::new(), &KafkaHeaders(headers))
}

/// A record's headers as the propagator reads them: the last value of a name wins (as
/// librdkafka's `header_get_last`), values that are not UTF-8 are absent.
struct KafkaHeaders<'a>(&'a BorrowedHeaders);

impl Extractor for KafkaHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let h = self.0.iter().filter(|h| h.key == key).last()?;
        std::str::from_utf8(h.value?).ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.key).collect()
    }
}

/// A trace context as headers carry it: what a record passes on to a record made from it later
/// (the dead letter of a URL record the broker refused carries the URL record's context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

impl Carried {
    /// The last `traceparent` (and `tracestate`) of `headers`, as written (none when absent or
    /// not UTF-8): taken only on the rare paths that need it, so nothing is parsed.
    pub fn from_headers(headers: &BorrowedHeaders) -> Option<Carried> {
        let h = KafkaHeaders(headers);
        Some(Carried {
            traceparent: h.get(TRACEPARENT)?.to_owned(),
            tracestate: h.get(TRACESTATE).map(str::to_owned),
        })
    }

    /// `headers` with this context added.
    pub fn insert(&self, headers: OwnedHeaders) -> OwnedHeaders {
        insert(headers, &self.traceparent, self.tracestate.as_deref())
    }
}

/// The `traceparent` of a span: version 00, its trace and span ids, its sampled flag.
pub fn traceparent(sc: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags() & TraceFlags::SAMPLED
    )
}

/// `headers` with `traceparent` (and `tracestate`) added.
pub fn insert(headers: OwnedHeaders, traceparent: &str, tracestate: Option<&str>) -> OwnedHeaders {
    let headers = headers.insert(Header {
        key: TRACEPARENT,
        value: Some(traceparent),
    });
    match tracestate {
        Some(state) => headers.insert(Header {
            key: TRACESTATE,
            value: Some(state),
        }),
        None => headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    fn read(headers: OwnedHeaders) -> Option<SpanContext> {
        let borrowed = headers.as_borrowed();
        if !has_traceparent(borrowed) {
            return None;
        }
        let cx = extract(&TraceContextPropagator::new(), borrowed);
        let sc = cx.span().span_context().clone();
        sc.is_valid().then_some(sc)
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_written_traceparent_reads_back_as_the_same_remote_parent() {
        let h = insert(OwnedHeaders::new(), PARENT, Some("vendor=x"));
        let sc = read(h).expect("a parent");
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(traceparent(&sc), PARENT);
        assert_eq!(sc.trace_state().header(), "vendor=x");
    }

    #[test]
    fn a_carried_context_is_passed_on_as_written() {
        let h = insert(OwnedHeaders::new(), PARENT, Some("vendor=x"));
        let carried = Carried::from_headers(h.as_borrowed()).expect("carried");
        assert_eq!(carried.traceparent, PARENT);
        assert_eq!(carried.tracestate.as_deref(), Some("vendor=x"));
        let again = carried.insert(OwnedHeaders::new());
        assert_eq!(Carried::from_headers(again.as_borrowed()), Some(carried));
        assert_eq!(
            Carried::from_headers(OwnedHeaders::new().as_borrowed()),
            None
        );
    }

    #[test]
    fn the_last_traceparent_wins_and_invalid_ones_are_no_parent() {
        let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        let h = insert(insert(OwnedHeaders::new(), PARENT, None), other, None);
        let sc = read(h).unwrap();
        assert_eq!(traceparent(&sc), other);
        assert!(!sc.is_sampled());
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "garbage",
            "",
        ] {
            assert!(
                read(insert(OwnedHeaders::new(), bad, None)).is_none(),
                "{bad}"
            );
        }
        let none = OwnedHeaders::new().insert(Header {
            key: "other",
            value: Some("x"),
        });
        assert!(read(none).is_none());
    }
}
