//! The first pass over the common event, without serde_json: a flat JSON object whose keys and
//! string values have no escapes, each value a string, a number, `true`, `false` or `null`. That is
//! what devices send, and serde_json's general machinery (a visitor per key, a `RawValue` capture
//! per field) was a quarter of the engine's time per event.
//!
//! It only ever accepts: anything it does not fully check (nesting, an escape, a control
//! character, a known field given twice, anything that is not JSON) gives `None`, and the full
//! parser ([`super::raw_fields::parse_raw`]) decides and words the error. On every input it
//! accepts, it finds the same fields as the full parser (the tests compare the two).

use super::raw_fields::{Field, RawFields};

/// The known fields of `text` when it is a flat object this pass checks whole; `None` otherwise.
pub(super) fn parse_flat(text: &str) -> Option<RawFields<'_>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut fields = RawFields::default();
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let key_end = string_end(b, i + 1)?;
            let key = &text[i + 1..key_end];
            i = skip_ws(b, key_end + 1);
            if b.get(i) != Some(&b':') {
                return None;
            }
            let start = skip_ws(b, i + 1);
            i = value_end(b, start)?;
            if let Some(field) = Field::named(key) {
                let (_, slot) = fields.slot(field);
                if slot.is_some() {
                    // A duplicate: the full parser reports it.
                    return None;
                }
                *slot = Some(&text[start..i]);
            }
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (skip_ws(b, i) == b.len()).then_some(fields)
}

/// JSON's whitespace: space, tab, line feed, carriage return.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index of the quote closing a string whose contents start at `from`; `None` at an escape,
/// a control character or the end of the text. Eight bytes at a time, as serde_json's own scan.
fn string_end(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let stops = string_stops(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        if stops != 0 {
            i += (stops.trailing_zeros() / 8) as usize;
            return (b[i] == b'"').then_some(i);
        }
        i += 8;
    }
    let at = b.get(i..)?.iter().position(|&c| is_string_stop(c))?;
    (b[i + at] == b'"').then_some(i + at)
}

/// A byte that ends a string's plain run: its closing quote, an escape, a control character.
fn is_string_stop(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// The high bit of every byte of `x` (little-endian) that is `"`, `\` or below 0x20. A flag can
/// also appear on a byte *above* a flagged one (a borrow); the lowest flag is always exact, and
/// that is the only one read.
fn string_stops(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    let quote = zero(x ^ (ONES * b'"' as u64));
    let backslash = zero(x ^ (ONES * b'\\' as u64));
    let control = x.wrapping_sub(ONES * 0x20) & !x;
    (quote | backslash | control) & HIGH
}

/// The end of the scalar value starting at `i`; `None` for arrays, objects and anything invalid.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i + 1).map(|end| end + 1),
        b't' => literal_end(b, i, b"true"),
        b'f' => literal_end(b, i, b"false"),
        b'n' => literal_end(b, i, b"null"),
        b'-' | b'0'..=b'9' => number_end(b, i),
        _ => None,
    }
}

fn literal_end(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    b[i..].starts_with(word).then_some(i + word.len())
}

/// JSON's number grammar, exactly: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
/// (What follows it is checked by the caller: only whitespace, `,` or `}` may.)
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |i: usize| i + b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match b.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits(i + 1),
        _ => return None,
    };
    if b.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::super::raw_fields::parse_raw;
    use super::*;
    use proptest::prelude::*;

    /// Whatever the fast pass accepts, the full parser accepts with the same fields.
    fn agrees(text: &str) -> bool {
        match parse_flat(text) {
            None => false,
            Some(fast) => {
                let full = parse_raw(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
                assert_eq!(fast, full, "{text:?}");
                true
            }
        }
    }

    #[test]
    fn string_end_finds_the_first_stop_whatever_precedes_it() {
        // Every pair of bytes, at every place of an 8-byte word and across words: the word-wise
        // scan must agree with a byte-wise one (a borrow may only flag bytes above a true stop).
        let reference = |b: &[u8]| {
            let at = b.iter().position(|&c| is_string_stop(c))?;
            (b[at] == b'"').then_some(at)
        };
        for first in 0..=255u8 {
            for second in 0..=255u8 {
                for at in [0, 3, 6, 7, 8, 13] {
                    let mut text = vec![b'a'; 20];
                    text[at] = first;
                    text[at + 1] = second;
                    assert_eq!(
                        string_end(&text, 0),
                        reference(&text),
                        "{first:#x} {second:#x} at {at}"
                    );
                }
            }
        }
    }

    #[test]
    fn takes_the_common_event() {
        for text in [
            r#"{"device_id":"d1","event_type":"temp","severity":"high","location":"Plant 2 / Line 1","value":23.50,"timestamp":"2026-11-26T08:00:00Z","region":"europe"}"#,
            " {\t\"device_id\" : \"é😀\" ,\r\n\"value\":-0.5e+3,\"x\":null,\"y\":true,\"z\":false,\"timestamp\":1795680000000 } \n",
            r#"{"device_id":"a","event_type":7,"severity":null,"other":"ignored","other":"twice is fine"}"#,
            r#"{}"#,
            r#"{"":"","value":0,"location":-0,"description":1E9}"#,
        ] {
            assert!(agrees(text), "{text:?}");
        }
    }

    #[test]
    fn leaves_everything_else_to_the_full_parser() {
        for text in [
            r#"{"device_id":"a\"b"}"#,
            r#"{"device\u005fid":"a"}"#,
            "{\"device_id\":\"a\tb\"}",
            r#"{"device_id":"a","value":[1]}"#,
            r#"{"device_id":"a","x":{"y":1}}"#,
            r#"{"device_id":"a","device_id":"b"}"#,
            r#"{"device_id":null,"device_id":"b"}"#,
            r#"{"device_id":"a"} x"#,
            r#"{"device_id":"a",}"#,
            r#"{"device_id":"a" "value":1}"#,
            r#"{"device_id" "a"}"#,
            r#"{"device_id":"a""#,
            r#"{"device_id":"a"#,
            r#"{"device_id":01}"#,
            r#"{"device_id":1.}"#,
            r#"{"device_id":.5}"#,
            r#"{"device_id":1e}"#,
            r#"{"device_id":-}"#,
            r#"{"device_id":+1}"#,
            r#"{"device_id":tru}"#,
            r#"{"device_id":truex}"#,
            r#"{"device_id":NaN}"#,
            "\u{feff}{\"device_id\":\"a\"}",
            r#"[1]"#,
            r#""a""#,
            "",
            "{",
            r#"{"a":1"#,
            r#"{"a":1,"#,
        ] {
            assert!(parse_flat(text).is_none(), "{text:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Objects assembled from hostile pieces (any characters, escapes or not, numbers that
        /// are and are not JSON, stray whitespace and punctuation): whenever the fast pass
        /// accepts one, the full parser finds the same fields.
        #[test]
        fn never_disagrees_with_the_full_parser(
            members in proptest::collection::vec((
                prop_oneof![
                    proptest::sample::select(vec!["device_id", "value", "timestamp", "region", "dashboard_url", "x", ""]).prop_map(String::from),
                    ".{0,6}",
                ],
                prop_oneof![
                    ".{0,8}".prop_map(|s| format!("\"{s}\"")),
                    ".{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
                    "[-+]?[0-9]{0,3}(\\.[0-9]{0,2})?([eE][+-]?[0-9]{0,2})?",
                    proptest::sample::select(vec!["true", "false", "null", "nul", "[]", "{}", "1x"]).prop_map(String::from),
                ],
                "[ \t\r\n]{0,2}",
            ), 0..6),
            tail in proptest::sample::select(vec!["", " ", "\n", ",", "x", "}"]),
        ) {
            let body: Vec<String> = members
                .iter()
                .map(|(k, v, ws)| format!("{ws}\"{k}\"{ws}:{ws}{v}{ws}"))
                .collect();
            let text = format!("{{{}}}{tail}", body.join(","));
            if let Some(fast) = parse_flat(&text) {
                let full = parse_raw(&text);
                prop_assert!(full.is_ok(), "{:?}: fast accepted, full said {:?}", text, full.err());
                prop_assert_eq!(fast, full.unwrap(), "{:?}", text);
            }
        }
    }
}
