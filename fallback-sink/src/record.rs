//! The on-disk line format.
//!
//! One record is one line:
//!
//! ```text
//! {"id":"<uuid>","seq":<u64>,"ts":<unix ms>,"crc":<crc32c of payload bytes>,"payload":<json>}\n
//! ```
//!
//! The field order is fixed so that the exact payload bytes the checksum covers can be found
//! without re-serialising (re-serialising could reorder map keys or reformat numbers). Any other
//! JSON tool (`jq`) reads the line as an ordinary object.

use uuid::Uuid;

/// A record decoded from a spool line; the payload is kept as its raw JSON bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line<'a> {
    pub(crate) id: Uuid,
    pub(crate) seq: u64,
    pub(crate) ts_ms: u64,
    pub(crate) payload: &'a [u8],
}

/// Why a line was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineError {
    /// The line does not have the spool's shape.
    Malformed,
    /// The payload's checksum does not match.
    Checksum,
    /// The payload is not valid JSON.
    Json,
}

impl LineError {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LineError::Malformed => "malformed line",
            LineError::Checksum => "checksum mismatch",
            LineError::Json => "payload is not valid JSON",
        }
    }
}

/// Encodes one line (with its trailing newline) into `out`.
pub(crate) fn encode(out: &mut Vec<u8>, id: Uuid, seq: u64, ts_ms: u64, crc: u32, payload: &[u8]) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{{\"id\":\"{}\",\"seq\":{seq},\"ts\":{ts_ms},\"crc\":{crc},\"payload\":",
        id.as_hyphenated()
    );
    out.extend_from_slice(payload);
    out.extend_from_slice(b"}\n");
}

/// Length of the line `encode` would produce, for a payload of `payload_len` bytes.
pub(crate) fn encoded_len(seq: u64, ts_ms: u64, crc: u32, payload_len: usize) -> u64 {
    // {"id":"  +36+ ","seq":  N ,"ts": N ,"crc": N ,"payload": P }\n
    let fixed = 7 + 36 + 8 + 6 + 7 + 11 + 2;
    (fixed + digits(seq) + digits(ts_ms) + digits(u64::from(crc)) + payload_len) as u64
}

fn digits(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

/// Decodes and verifies one line (without its trailing newline).
pub(crate) fn decode(line: &[u8]) -> Result<Line<'_>, LineError> {
    let rest = line
        .strip_prefix(b"{\"id\":\"")
        .ok_or(LineError::Malformed)?;
    if rest.len() < 36 {
        return Err(LineError::Malformed);
    }
    let id = std::str::from_utf8(&rest[..36])
        .ok()
        .and_then(|s| Uuid::try_parse(s).ok())
        .ok_or(LineError::Malformed)?;
    let rest = rest[36..]
        .strip_prefix(b"\",\"seq\":")
        .ok_or(LineError::Malformed)?;
    let (seq, rest) = number(rest)?;
    let rest = rest.strip_prefix(b",\"ts\":").ok_or(LineError::Malformed)?;
    let (ts_ms, rest) = number(rest)?;
    let rest = rest
        .strip_prefix(b",\"crc\":")
        .ok_or(LineError::Malformed)?;
    let (crc, rest) = number(rest)?;
    let crc = u32::try_from(crc).map_err(|_| LineError::Malformed)?;
    let rest = rest
        .strip_prefix(b",\"payload\":")
        .ok_or(LineError::Malformed)?;
    let payload = rest.strip_suffix(b"}").ok_or(LineError::Malformed)?;
    if crc32c::crc32c(payload) != crc {
        return Err(LineError::Checksum);
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_err() {
        return Err(LineError::Json);
    }
    Ok(Line {
        id,
        seq,
        ts_ms,
        payload,
    })
}

fn number(s: &[u8]) -> Result<(u64, &[u8]), LineError> {
    let end = s
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    if end == 0 || end > 20 {
        return Err(LineError::Malformed);
    }
    let v = std::str::from_utf8(&s[..end])
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or(LineError::Malformed)?;
    Ok((v, &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(
            &mut out,
            Uuid::now_v7(),
            42,
            1_700_000_000_123,
            crc32c::crc32c(payload),
            payload,
        );
        out
    }

    #[test]
    fn round_trip() {
        let payload = br#"{"user":"a\nb","n":[1,2,3]}"#;
        let l = line(payload);
        assert_eq!(*l.last().unwrap(), b'\n');
        assert_eq!(
            l.len() as u64,
            encoded_len(
                42,
                1_700_000_000_123,
                crc32c::crc32c(payload),
                payload.len()
            )
        );
        let d = decode(&l[..l.len() - 1]).unwrap();
        assert_eq!(d.seq, 42);
        assert_eq!(d.ts_ms, 1_700_000_000_123);
        assert_eq!(d.payload, payload);
        // jq-readable: it is ordinary JSON.
        let v: serde_json::Value = serde_json::from_slice(&l).unwrap();
        assert_eq!(v["payload"]["n"][2], 3);
        assert_eq!(v["seq"], 42);
    }

    #[test]
    fn rejects_damage() {
        let l = line(br#"{"k":"value"}"#);
        let body = &l[..l.len() - 1];
        assert_eq!(decode(&body[..body.len() - 3]), Err(LineError::Malformed));
        let mut flipped = body.to_vec();
        let i = flipped.len() - 4;
        flipped[i] ^= 0x01;
        assert_eq!(decode(&flipped), Err(LineError::Checksum));
        assert_eq!(decode(b"garbage"), Err(LineError::Malformed));
        assert_eq!(decode(&[0u8; 64]), Err(LineError::Malformed));
        let bad = b"{not json";
        let mut out = Vec::new();
        encode(&mut out, Uuid::nil(), 1, 1, crc32c::crc32c(bad), bad);
        assert_eq!(decode(&out[..out.len() - 1]), Err(LineError::Json));
    }
}
