//! Rendering of event field values as text.
//!
//! The seed formats every field with Python's `str()`. For strings that is the string itself and for
//! numbers it is Python's number repr, which this module reproduces so that URLs stay byte-exact.
//! For other JSON values (booleans, arrays, objects) the seed's rendering (`True`, `{'a': 1}`) is an
//! accident of the language; they render as compact JSON text instead (`true`, `{"a":1}`).

use std::borrow::Cow;

/// Why a raw value could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// A number that does not fit an IEEE-754 double (`1e400`): Python would print `inf`, which no
    /// URL consumer expects, so such events are rejected instead.
    NumberOutOfRange,
    /// An array or object nested deeper than [`MAX_RENDER_DEPTH`]: no dashboard needs it, and
    /// it would make URLs of hundreds of kilobytes.
    TooDeep,
    /// A string with an escaped UTF-16 surrogate that has no pair (`"\ud800"`). The parser only
    /// checks such escapes when it decodes the string, so they reach [`render`]; the value is not
    /// Unicode text and cannot be put in a URL.
    LoneSurrogate,
}

/// Deepest array/object nesting rendered into a URL.
pub const MAX_RENDER_DEPTH: usize = 32;

/// Renders the text of one valid JSON value (never `null`: callers treat `null` as absent) the
/// way the seed would.
pub fn render(text: &str) -> Result<Cow<'_, str>, RenderError> {
    match text.as_bytes().first() {
        Some(b'"') => decode_string(text),
        Some(b'-' | b'0'..=b'9') => render_number(text),
        Some(b't' | b'f') => Ok(Cow::Borrowed(text)),
        // Arrays and objects: compact JSON text, keys in their original order.
        _ => minify(text).map(Cow::Owned),
    }
}

/// Decodes a JSON string literal; borrows when it has no escapes (the common case).
fn decode_string(literal: &str) -> Result<Cow<'_, str>, RenderError> {
    let inner = &literal[1..literal.len() - 1];
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner));
    }
    // The parser that captured the raw value does not check `\u` escapes, so decoding can fail
    // here: an unpaired surrogate (`"\ud800"`) is rejected, never mapped to an empty string
    // (which would report a `device_id` as "empty" and make any other field lose its value).
    serde_json::from_str::<String>(literal)
        .map(Cow::Owned)
        .map_err(|_| RenderError::LoneSurrogate)
}

/// A JSON number as Python's `str(json.loads(text))` prints it.
fn render_number(text: &str) -> Result<Cow<'_, str>, RenderError> {
    let is_integer = !text.contains(['.', 'e', 'E']);
    if is_integer {
        // Python ints are arbitrary precision: the digits print as written; `-0` prints as `0`.
        let digits = text.strip_prefix('-').unwrap_or(text);
        if digits.bytes().all(|b| b == b'0') {
            return Ok(Cow::Borrowed("0"));
        }
        return Ok(Cow::Borrowed(text));
    }
    if let Some(repr) = plain_decimal_repr(text) {
        return Ok(Cow::Borrowed(repr));
    }
    let value: f64 = text.parse().map_err(|_| RenderError::NumberOutOfRange)?;
    if !value.is_finite() {
        return Err(RenderError::NumberOutOfRange);
    }
    Ok(Cow::Owned(python_float_repr(value)))
}

/// The common case without any float conversion: for a JSON number literal `-?I.F` (no exponent)
/// with at most 15 significant digits and a decimal exponent in [-4, 15), Python's `repr` is the
/// literal minus the trailing zeros of `F` (keeping one digit), which is a prefix of the literal.
///
/// Why: a decimal of at most 15 significant digits (DBL_DIG) survives decimal → double → decimal,
/// so no two such decimals share a double, and the shortest digits that round-trip are the
/// literal's own; an exponent in [-4, 16) is printed positionally. `None` when the rule does not
/// apply (the caller then takes the general path).
fn plain_decimal_repr(text: &str) -> Option<&str> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = unsigned.split_once('.')?;
    // A JSON literal has no leading zeros in `int` (except `0` itself) and a non-empty `frac`.
    if int.is_empty()
        || frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (int.len() > 1 && int.starts_with('0'))
    {
        return None;
    }
    let kept = frac.trim_end_matches('0');
    let significant = if int == "0" {
        // 0.000ddd: the exponent is -(leading zeros + 1), positional down to -4.
        let zeros = kept.len() - kept.trim_start_matches('0').len();
        if !kept.is_empty() && zeros > 3 {
            return None;
        }
        kept.len() - zeros
    } else {
        int.len() + kept.len()
    };
    if int.len() > 15 || significant > 15 {
        return None;
    }
    // Keep one fraction digit (a `0`) when all of them were zeros.
    let end = text.len() - frac.len() + kept.len().max(1);
    Some(&text[..end])
}

/// Python's `repr(float)`: the shortest digits that round-trip, positional for decimal exponents in
/// [-4, 16), scientific (`1e+16`, `1.5e-05`) outside it, and `.0` on integral positional values.
pub fn python_float_repr(value: f64) -> String {
    // Rust's `{:e}` yields the same shortest round-trip digits, e.g. `-1.2345e3`.
    let sci = format!("{value:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // position of the decimal point within `digits`
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs())
    }
}

/// Removes insignificant whitespace from valid JSON text, checking its depth on the way.
fn minify(text: &str) -> Result<String, RenderError> {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut depth = 0usize;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            match c {
                '[' | '{' => depth += 1,
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth > MAX_RENDER_DEPTH {
                return Err(RenderError::TooDeep);
            }
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn r(json: &str) -> String {
        let raw: Box<RawValue> = serde_json::from_str(json).unwrap();
        render(raw.get()).unwrap().into_owned()
    }

    #[test]
    fn floats_match_python_repr() {
        for (input, python) in [
            ("20.5", "20.5"),
            ("20.50", "20.5"),
            ("100.0", "100.0"),
            ("-3.14", "-3.14"),
            ("1e16", "1e+16"),
            ("1.5e16", "1.5e+16"),
            ("1e15", "1000000000000000.0"),
            ("0.0001", "0.0001"),
            ("0.00001", "1e-05"),
            ("1.25e-7", "1.25e-07"),
            ("-0.0", "-0.0"),
            ("0.1", "0.1"),
            ("123456789.125", "123456789.125"),
            ("1E2", "100.0"),
            ("1e300", "1e+300"),
        ] {
            assert_eq!(r(input), python, "{input}");
        }
    }

    #[test]
    fn plain_decimals_take_the_fast_path_and_match_the_general_one() {
        for (input, python) in [
            ("20.0", "20.0"),
            ("20.50", "20.5"),
            ("-0.0", "-0.0"),
            ("0.000", "0.0"),
            ("-0.500", "-0.5"),
            ("0.0001", "0.0001"),
            ("0.00012340", "0.0001234"),
            ("123456789012345.0", "123456789012345.0"),
            ("12345.6789012345", "12345.6789012345"),
        ] {
            assert_eq!(plain_decimal_repr(input), Some(python), "{input}");
            assert_eq!(python_float_repr(input.parse().unwrap()), python, "{input}");
        }
        // Outside the rule: exponents, 16+ significant digits, tiny or huge values.
        for input in [
            "1e5",
            "1.5E2",
            "0.00001",
            "1234567890123456.0",
            "0.1234567890123456",
            "1.0000000000000001",
            "9007199254740993.0",
        ] {
            assert_eq!(plain_decimal_repr(input), None, "{input}");
        }
        // Pseudo-random literals: the fast path agrees with the float formatting wherever it applies.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut applied = 0;
        for _ in 0..300_000 {
            let int_len = next(18) as usize;
            let int: String = match int_len {
                0 => "0".into(),
                n => (0..n)
                    .map(|i| char::from(b'0' + if i == 0 { 1 + next(9) } else { next(10) } as u8))
                    .collect(),
            };
            let lead = next(7) as usize;
            let frac: String = "0".repeat(lead)
                + &(0..1 + next(17))
                    .map(|_| char::from(b'0' + next(10) as u8))
                    .collect::<String>()
                + &"0".repeat(next(4) as usize);
            let sign = if next(2) == 0 { "-" } else { "" };
            let text = format!("{sign}{int}.{frac}");
            let general = python_float_repr(text.parse().unwrap());
            if let Some(fast) = plain_decimal_repr(&text) {
                applied += 1;
                assert_eq!(fast, general, "{text}");
            }
        }
        assert!(
            applied > 50_000,
            "the fast path was exercised {applied} times"
        );
    }

    #[test]
    fn integers_print_as_written() {
        assert_eq!(r("42"), "42");
        assert_eq!(r("-7"), "-7");
        assert_eq!(r("-0"), "0");
        assert_eq!(
            r("123456789012345678901234567890"),
            "123456789012345678901234567890"
        );
    }

    #[test]
    fn other_values_render_as_compact_json() {
        assert_eq!(r("true"), "true");
        assert_eq!(
            r(r#"{ "b" : [1, 2], "a": "x y" }"#),
            r#"{"b":[1,2],"a":"x y"}"#
        );
        assert_eq!(r(r#""a\"b \u00e9""#), "a\"b é");
        assert_eq!(r(r#""plain""#), "plain");
    }

    #[test]
    fn unpaired_surrogates_are_rejected() {
        for literal in [r#""\ud800""#, r#""a\udc00b""#, r#""\ud83d x""#] {
            let raw: Box<RawValue> = serde_json::from_str(literal).unwrap();
            assert_eq!(
                render(raw.get()),
                Err(RenderError::LoneSurrogate),
                "{literal}"
            );
        }
        assert_eq!(r(r#""\ud83d\ude00""#), "😀");
    }

    #[test]
    fn out_of_range_numbers_are_rejected() {
        let raw: Box<RawValue> = serde_json::from_str("1e400").unwrap();
        assert_eq!(render(raw.get()), Err(RenderError::NumberOutOfRange));
    }
}
