//! Arbitrary bytes → `parse_event`; when it accepts them, the URLs built from the event keep
//! exactly three parameters that decode back to the event's texts.
#![no_main]

use std::sync::OnceLock;

use aepiot_stream::core::event::parse_event;
use aepiot_stream::core::urls::{UrlBuilder, UrlSet, UrlSettings};
use libfuzzer_sys::fuzz_target;

#[path = "check.rs"]
mod check;

fn builder() -> &'static UrlBuilder {
    static B: OnceLock<UrlBuilder> = OnceLock::new();
    B.get_or_init(|| UrlBuilder::new(UrlSettings::default()))
}

fuzz_target!(|data: &[u8]| {
    let b = builder();
    match parse_event(Some(data), 1 << 20) {
        Ok(event) => {
            assert!(!event.device_id.is_empty() && event.device_id.len() <= 256);
            let mut set = UrlSet::default();
            b.build(&event, &mut set);
            check::urls_match_event(&event, set.urls(), set.regional(), b.settings());
        }
        Err(e) => {
            assert!(!e.message.is_empty());
            // A rejected payload is rejected for a reason that fits it.
            if data.len() <= 1 << 20 && std::str::from_utf8(data).is_err() {
                assert_eq!(e.kind.as_str(), "not_utf8", "{e:?}");
            }
        }
    }
});
