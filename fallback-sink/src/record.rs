//! The on-disk line format, and the scanner that finds records in a damaged segment.
//!
//! One record is one line (format version 2):
//!
//! ```text
//! {"v":2,"id":"<uuid>","seq":<u64>,"ts":<unix ms>,"payload":<json>,"crc":<crc32c>}\n
//! ```
//!
//! The CRC32C covers every byte of the line before `,"crc":` — the version, id, sequence
//! number, timestamp and payload — so a changed byte anywhere in a line is detected, never read
//! back as another record. The field order is fixed, so the covered bytes are found without
//! re-serialising, and any JSON tool (`jq`) reads the line as an ordinary object.
//!
//! Version 1 lines (`{"id":..,"seq":..,"ts":..,"crc":<crc32c of the payload>,"payload":..}`,
//! written before 0.1) are still read, so an old spool drains after an upgrade; their checksum
//! covers only the payload, so damage to their id, seq or timestamp is not detected. New lines
//! are always version 2.

use std::io::Write as _;

use uuid::Uuid;

const V2_START: &[u8] = b"{\"v\":2,\"id\":\"";
const V1_START: &[u8] = b"{\"id\":\"";
const CRC_KEY: &[u8] = b",\"crc\":";

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
    /// The checksum does not match.
    Checksum,
    /// The payload is not valid JSON.
    Json,
    /// A line without its newline at the end of the last segment that is not a whole record.
    Torn,
}

impl LineError {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LineError::Malformed => "malformed line",
            LineError::Checksum => "checksum mismatch",
            LineError::Json => "payload is not valid JSON",
            LineError::Torn => "incomplete line (torn write)",
        }
    }
}

/// Encodes one version 2 line (with its trailing newline) onto `out`.
pub(crate) fn encode(out: &mut Vec<u8>, id: Uuid, seq: u64, ts_ms: u64, payload: &[u8]) {
    let start = out.len();
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{{\"v\":2,\"id\":\"{}\",\"seq\":{seq},\"ts\":{ts_ms},\"payload\":",
        id.as_hyphenated()
    );
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start..]);
    let _ = writeln!(out, ",\"crc\":{crc}}}");
}

/// Decodes and verifies one line (without its trailing newline).
pub(crate) fn decode(line: &[u8]) -> Result<Line<'_>, LineError> {
    if line.starts_with(V2_START) {
        decode_v2(line)
    } else if line.starts_with(V1_START) {
        decode_v1(line)
    } else {
        Err(LineError::Malformed)
    }
}

fn decode_v2(line: &[u8]) -> Result<Line<'_>, LineError> {
    let body = line.strip_suffix(b"}").ok_or(LineError::Malformed)?;
    // The last `,"crc":` is ours: only digits follow it.
    let at = rfind(body, CRC_KEY).ok_or(LineError::Malformed)?;
    let (crc, rest) = number(&body[at + CRC_KEY.len()..])?;
    if !rest.is_empty() {
        return Err(LineError::Malformed);
    }
    let covered = &body[..at];
    if u64::from(crc32c::crc32c(covered)) != crc {
        return Err(LineError::Checksum);
    }
    let rest = covered.get(V2_START.len()..).ok_or(LineError::Malformed)?;
    let (id, rest) = uuid(rest)?;
    let rest = rest
        .strip_prefix(b"\",\"seq\":")
        .ok_or(LineError::Malformed)?;
    let (seq, rest) = number(rest)?;
    let rest = rest.strip_prefix(b",\"ts\":").ok_or(LineError::Malformed)?;
    let (ts_ms, rest) = number(rest)?;
    let payload = rest
        .strip_prefix(b",\"payload\":")
        .ok_or(LineError::Malformed)?;
    json(payload)?;
    Ok(Line {
        id,
        seq,
        ts_ms,
        payload,
    })
}

fn decode_v1(line: &[u8]) -> Result<Line<'_>, LineError> {
    let (id, rest) = uuid(&line[V1_START.len()..])?;
    let rest = rest
        .strip_prefix(b"\",\"seq\":")
        .ok_or(LineError::Malformed)?;
    let (seq, rest) = number(rest)?;
    let rest = rest.strip_prefix(b",\"ts\":").ok_or(LineError::Malformed)?;
    let (ts_ms, rest) = number(rest)?;
    let rest = rest.strip_prefix(CRC_KEY).ok_or(LineError::Malformed)?;
    let (crc, rest) = number(rest)?;
    let rest = rest
        .strip_prefix(b",\"payload\":")
        .ok_or(LineError::Malformed)?;
    let payload = rest.strip_suffix(b"}").ok_or(LineError::Malformed)?;
    if u64::from(crc32c::crc32c(payload)) != crc {
        return Err(LineError::Checksum);
    }
    json(payload)?;
    Ok(Line {
        id,
        seq,
        ts_ms,
        payload,
    })
}

fn uuid(s: &[u8]) -> Result<(Uuid, &[u8]), LineError> {
    if s.len() < 36 {
        return Err(LineError::Malformed);
    }
    let id = std::str::from_utf8(&s[..36])
        .ok()
        .and_then(|s| Uuid::try_parse(s).ok())
        .ok_or(LineError::Malformed)?;
    Ok((id, &s[36..]))
}

fn json(payload: &[u8]) -> Result<(), LineError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(payload)
        .map(|_| ())
        .map_err(|_| LineError::Json)
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

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// How many times a damaged chunk's length [`salvage`] may examine.
const SALVAGE_BUDGET: usize = 64;

/// A piece of a segment found by [`scan`]. Offsets are into the scanned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A verified record in `start..end` (without its newline). `clean` is false when its
    /// newline is missing or damaged (the byte after it, if any, belongs to it).
    Record {
        start: usize,
        end: usize,
        clean: bool,
        seq: u64,
        ts_ms: u64,
    },
    /// Bytes that are not part of any verified record.
    Bad {
        start: usize,
        end: usize,
        why: LineError,
    },
}

/// Splits `data[from..]` into verified records and bad byte ranges, covering every byte.
///
/// Lines are split at newlines; a line that does not verify is searched for version 2
/// records inside it (a damaged newline glues a record to its neighbour, a zeroed range
/// swallows the newline before an intact record), so an intact record is found whatever
/// happened to the bytes around it.
pub(crate) fn scan(data: &[u8], from: usize) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut off = from.min(data.len());
    while off < data.len() {
        let (body_end, next) = match data[off..].iter().position(|b| *b == b'\n') {
            Some(p) => (off + p, off + p + 1),
            None => (data.len(), data.len()),
        };
        match decode(&data[off..body_end]) {
            Ok(l) => out.push(Piece::Record {
                start: off,
                end: body_end,
                clean: next > body_end,
                seq: l.seq,
                ts_ms: l.ts_ms,
            }),
            Err(e) => salvage(data, off, next, e, &mut out),
        }
        off = next;
    }
    out
}

/// Finds version 2 records in `data[a..b]`, a chunk that does not verify as one line.
///
/// The search examines at most [`SALVAGE_BUDGET`] times the chunk's length (a damaged chunk
/// holds a few glued records, so the budget is never reached by real damage; crafted garbage
/// with thousands of record headers would make the search quadratic). Bytes it could not
/// search are quarantined like any other bad range: nothing is skipped, at worst an intact
/// record in such a chunk lands in the quarantine file instead of being delivered.
fn salvage(data: &[u8], a: usize, b: usize, why: LineError, out: &mut Vec<Piece>) {
    let mut cursor = a;
    let mut s = a;
    let mut budget = (b - a)
        .saturating_mul(SALVAGE_BUDGET)
        .saturating_add(1 << 20);
    while budget > 0
        && let Some(p) = find(&data[s..b], V2_START)
    {
        let start = s + p;
        match record_at(data, start, b, &mut budget) {
            Some((end, seq, ts_ms)) => {
                if start > cursor {
                    out.push(Piece::Bad {
                        start: cursor,
                        end: start,
                        why: bad_reason(data, cursor, start, why),
                    });
                }
                let clean = end < data.len() && data[end] == b'\n';
                out.push(Piece::Record {
                    start,
                    end,
                    clean,
                    seq,
                    ts_ms,
                });
                // The byte after a record is its newline, damaged or not, unless the next
                // record starts right there (the newline was removed).
                cursor = if end < b && !data[end..].starts_with(V2_START) {
                    end + 1
                } else {
                    end
                };
                s = cursor;
            }
            None => s = start + 1,
        }
    }
    if cursor < b {
        out.push(Piece::Bad {
            start: cursor,
            end: b,
            why: bad_reason(data, cursor, b, why),
        });
    }
}

fn bad_reason(data: &[u8], a: usize, b: usize, fallback: LineError) -> LineError {
    if b == data.len() && data[b - 1] != b'\n' {
        return LineError::Torn;
    }
    let body = data[a..b].strip_suffix(b"\n").unwrap_or(&data[a..b]);
    decode(body).err().unwrap_or(fallback)
}

/// The end of a version 2 record starting at `start`, ending before `limit`, if there is one.
///
/// Linear in the bytes after `start`: a start whose header (version, id, seq, ts) does not
/// parse is rejected at once, and the checksum is extended incrementally from one candidate
/// `,"crc":` to the next instead of being recomputed for each. The bytes examined are taken
/// from `budget`; when it runs out the search stops.
fn record_at(
    data: &[u8],
    start: usize,
    limit: usize,
    budget: &mut usize,
) -> Option<(usize, u64, u64)> {
    let payload_at = start + header_v2(&data[start..limit])?;
    let mut crc = crc32c::crc32c(&data[start..payload_at]);
    let mut covered = payload_at;
    let mut s = payload_at;
    while let Some(p) = find(&data[s..limit], CRC_KEY) {
        let key = s + p;
        let work = key - s + 64;
        if *budget < work {
            *budget = 0;
            return None;
        }
        *budget -= work;
        crc = crc32c::crc32c_append(crc, &data[covered..key]);
        covered = key;
        let digits = key + CRC_KEY.len();
        let n = data[digits..limit]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let close = digits + n;
        if n > 0
            && close < limit
            && data[close] == b'}'
            && number(&data[digits..close]).is_ok_and(|(v, _)| v == u64::from(crc))
            && let Ok(l) = decode_v2(&data[start..=close])
        {
            return Some((close + 1, l.seq, l.ts_ms));
        }
        s = digits;
    }
    None
}

/// Length of a well-formed version 2 header (`{"v":2,"id":"..","seq":N,"ts":N,"payload":`)
/// at the start of `s`.
fn header_v2(s: &[u8]) -> Option<usize> {
    let rest = s.strip_prefix(V2_START)?;
    let (_, rest) = uuid(rest).ok()?;
    let rest = rest.strip_prefix(b"\",\"seq\":")?;
    let (_, rest) = number(rest).ok()?;
    let rest = rest.strip_prefix(b",\"ts\":")?;
    let (_, rest) = number(rest).ok()?;
    let rest = rest.strip_prefix(b",\"payload\":")?;
    Some(s.len() - rest.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, Uuid::now_v7(), 42, 1_700_000_000_123, payload);
        out
    }

    #[test]
    fn round_trip() {
        let payload = br#"{"user":"a\nb","n":[1,2,3],"crc":7}"#;
        let l = line(payload);
        assert_eq!(*l.last().unwrap(), b'\n');
        let d = decode(&l[..l.len() - 1]).unwrap();
        assert_eq!(d.seq, 42);
        assert_eq!(d.ts_ms, 1_700_000_000_123);
        assert_eq!(d.payload, payload);
        // jq-readable: it is ordinary JSON.
        let v: serde_json::Value = serde_json::from_slice(&l).unwrap();
        assert_eq!(v["payload"]["n"][2], 3);
        assert_eq!(v["seq"], 42);
        assert_eq!(v["v"], 2);
    }

    #[test]
    fn every_byte_is_covered() {
        let l = line(br#"{"k":"value"}"#);
        let body = &l[..l.len() - 1];
        for i in 0..body.len() {
            for bit in 0..8 {
                let mut d = body.to_vec();
                d[i] ^= 1 << bit;
                assert!(
                    decode(&d).is_err(),
                    "flip of bit {bit} at {i} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn reads_version_1_lines() {
        let payload = br#"{"k":1}"#;
        let id = Uuid::now_v7();
        let v1 = format!(
            "{{\"id\":\"{id}\",\"seq\":3,\"ts\":5,\"crc\":{},\"payload\":{}}}",
            crc32c::crc32c(payload),
            std::str::from_utf8(payload).unwrap()
        );
        let d = decode(v1.as_bytes()).unwrap();
        assert_eq!((d.id, d.seq, d.ts_ms, d.payload), (id, 3, 5, &payload[..]));
        let mut bad = v1.into_bytes();
        let n = bad.len();
        bad[n - 3] ^= 1;
        assert_eq!(decode(&bad), Err(LineError::Checksum));
    }

    #[test]
    fn rejects_damage() {
        let l = line(br#"{"k":"value"}"#);
        let body = &l[..l.len() - 1];
        assert_eq!(decode(&body[..body.len() - 3]), Err(LineError::Malformed));
        assert_eq!(decode(b"garbage"), Err(LineError::Malformed));
        assert_eq!(decode(&[0u8; 64]), Err(LineError::Malformed));
        let mut out = Vec::new();
        encode(&mut out, Uuid::nil(), 1, 1, b"{not json");
        assert_eq!(decode(&out[..out.len() - 1]), Err(LineError::Json));
    }

    #[test]
    fn salvage_is_bounded_on_adversarial_garbage() {
        // Many record starts and many checksum keys, none forming a record: must not be
        // quadratic (22 s for these 400 kB in a debug build before the budget).
        let mut data = Vec::new();
        let header = line(b"1");
        let header = &header[..header.len() - 20];
        for _ in 0..2000 {
            data.extend_from_slice(header);
        }
        for _ in 0..2000 {
            data.extend_from_slice(b",\"crc\":1}");
        }
        data.push(b'\n');
        let started = std::time::Instant::now();
        let pieces = scan(&data, 0);
        assert!(pieces.iter().all(|p| matches!(p, Piece::Bad { .. })));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn scan_finds_records_around_damage() {
        let (a, b, c) = (line(b"1"), line(b"2"), line(b"3"));
        // a's newline damaged, junk before c, c without newline.
        let mut data = a.clone();
        *data.last_mut().unwrap() = b'x';
        data.extend_from_slice(&b);
        data.extend_from_slice(b"\0\0junk");
        data.extend_from_slice(&c[..c.len() - 1]);
        let pieces = scan(&data, 0);
        let kinds: Vec<_> = pieces
            .iter()
            .map(|p| match p {
                Piece::Record { clean, .. } => {
                    if *clean {
                        "ok"
                    } else {
                        "repair"
                    }
                }
                Piece::Bad { .. } => "bad",
            })
            .collect();
        assert_eq!(kinds, ["repair", "ok", "bad", "repair"]);
        let Piece::Bad { start, end, .. } = pieces[2] else {
            unreachable!()
        };
        assert_eq!((start, end), (a.len() + b.len(), a.len() + b.len() + 6));
    }
}
