//! The Confluent wire format, the framing every Schema Registry serializer writes: byte 0 (the
//! magic byte), the schema id as 4 bytes big-endian, then the encoded value. Protobuf values start
//! with the message indexes that name which message of the schema's file was written. Pure: bytes
//! in, parts out, every length checked against what is there.

use smallvec::SmallVec;

/// The first byte of a record in the wire format. A JSON event starts with `{` (or whitespace),
/// so the first byte tells the two apart on one topic.
pub const MAGIC: u8 = 0;

/// The magic byte and the schema id.
pub const HEADER_BYTES: usize = 5;

/// Most message indexes accepted: the nesting depth of the named message. Real schemas nest a
/// few levels; the count comes from the device, so it is bounded before anything is read.
pub const MAX_MESSAGE_INDEXES: usize = 32;

/// Whether a record is in the wire format (else it takes the JSON path).
pub fn is_framed(payload: &[u8]) -> bool {
    payload.first() == Some(&MAGIC)
}

/// A record in the wire format: its schema id and the encoded value after the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    pub schema_id: u32,
    pub body: &'a [u8],
}

/// Splits a record that starts with [`MAGIC`] into its schema id and body; `Err` says why it is
/// not a wire-format record (too short, or another first byte).
pub fn frame(payload: &[u8]) -> Result<Framed<'_>, String> {
    match payload {
        [MAGIC, a, b, c, d, body @ ..] => Ok(Framed {
            schema_id: u32::from_be_bytes([*a, *b, *c, *d]),
            body,
        }),
        [MAGIC, ..] => Err(format!(
            "a Schema Registry record needs {HEADER_BYTES} header bytes (magic byte 0, 4-byte schema id); this one has {}",
            payload.len()
        )),
        _ => Err("a Schema Registry record starts with the magic byte 0".into()),
    }
}

/// The message indexes at the start of a Protobuf body, and the message after them: the path to
/// the message in the schema's file (top-level index, then nested indexes). A single 0 byte is
/// the shortcut for `[0]`, the file's first message. Counts and indexes are zigzag varints.
pub fn message_indexes(body: &[u8]) -> Result<(SmallVec<[usize; 4]>, &[u8]), String> {
    let (count, mut rest) = zigzag_varint(body)?;
    if count == 0 {
        return Ok((SmallVec::from_slice(&[0]), rest));
    }
    if count < 0 || count as u64 > MAX_MESSAGE_INDEXES as u64 {
        return Err(format!(
            "the message index count is {count}; at most {MAX_MESSAGE_INDEXES} are accepted"
        ));
    }
    let mut indexes = SmallVec::new();
    for _ in 0..count {
        let (i, r) = zigzag_varint(rest)?;
        let i = usize::try_from(i).map_err(|_| format!("message index {i} is negative"))?;
        indexes.push(i);
        rest = r;
    }
    Ok((indexes, rest))
}

/// One zigzag-encoded varint of at most 64 bits.
fn zigzag_varint(bytes: &[u8]) -> Result<(i64, &[u8]), String> {
    let mut value: u64 = 0;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let signed = (value >> 1) as i64 ^ -((value & 1) as i64);
            return Ok((signed, &bytes[i + 1..]));
        }
    }
    Err(if bytes.len() < 10 {
        "the message indexes are cut short".into()
    } else {
        "a message index is longer than 10 bytes".into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_header_and_refuses_short_or_foreign_records() {
        let f = frame(&[0, 0, 0, 1, 2, b'x', b'y']).unwrap();
        assert_eq!(f.schema_id, 258);
        assert_eq!(f.body, b"xy");
        let f = frame(&[0, 0xff, 0xff, 0xff, 0xff]).unwrap();
        assert_eq!(f.schema_id, u32::MAX);
        assert!(f.body.is_empty());
        for short in [&[0u8][..], &[0, 0, 0, 1]] {
            let e = frame(short).unwrap_err();
            assert!(e.contains(&format!("this one has {}", short.len())), "{e}");
        }
        assert!(frame(b"{\"device_id\":1}").is_err());
        assert!(frame(b"").is_err());
        assert!(is_framed(&[0]));
        assert!(!is_framed(b"{"));
        assert!(!is_framed(b""));
    }

    #[test]
    fn message_indexes_with_the_zero_shortcut() {
        let (ix, rest) = message_indexes(&[0, 0x0a, 1]).unwrap();
        assert_eq!(ix.as_slice(), &[0]);
        assert_eq!(rest, &[0x0a, 1]);
        // [1, 2]: count 2 (zigzag 4), 1 (2), 2 (4).
        let (ix, rest) = message_indexes(&[4, 2, 4, 9]).unwrap();
        assert_eq!(ix.as_slice(), &[1, 2]);
        assert_eq!(rest, &[9]);
        // A multi-byte varint: 300 → zigzag 600 = 0xd8 0x04.
        let (ix, _) = message_indexes(&[2, 0xd8, 0x04]).unwrap();
        assert_eq!(ix.as_slice(), &[300]);
    }

    #[test]
    fn hostile_message_indexes_are_refused() {
        // Cut short: nothing, a count without its indexes, a varint with its high bit set.
        assert!(message_indexes(&[]).is_err());
        assert!(message_indexes(&[4, 2]).is_err());
        assert!(message_indexes(&[0x80]).is_err());
        // A huge count is refused before any index is read.
        let e = message_indexes(&[0xfe, 0xff, 0xff, 0xff, 0x0f]).unwrap_err();
        assert!(e.contains("at most 32"), "{e}");
        // A negative count, a negative index.
        assert!(message_indexes(&[1]).is_err());
        assert!(message_indexes(&[2, 1]).unwrap_err().contains("negative"));
        // Eleven continuation bytes: not a 64-bit varint.
        assert!(message_indexes(&[0xff; 11])
            .unwrap_err()
            .contains("10 bytes"));
    }
}
