//! The spool directory's file layout: names, and positions in segments.

/// The lock file, `flock`ed by the owner.
pub(crate) const LOCK: &str = "spool.lock";
/// Where corrupt lines go.
pub(crate) const QUARANTINE: &str = "quarantine.jsonl";

/// A place in the spool: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// Segment number (the file is `segment-<20 digits>.jsonl`).
    pub segment: u64,
    /// Byte offset of the next unread line in that segment.
    pub offset: u64,
}

pub(crate) fn segment_name(id: u64) -> String {
    format!("segment-{id:020}.jsonl")
}

/// The id of the segment after `id`. Ids never wrap: a wrapped id would sort before the
/// spool's older segments, and be read out of order or dropped as consumed. Only a crafted
/// file name or checkpoint reaches `u64::MAX`; then writing fails with this error (the records
/// already written stay readable) until the segments are renamed to lower ids, in order.
pub(crate) fn next_segment_id(dir: &std::path::Path, id: u64) -> Result<u64, crate::Error> {
    id.checked_add(1).ok_or_else(|| {
        crate::Error::io(
            "create",
            dir.join(segment_name(id)),
            std::io::Error::other(
                "no segment id follows this one: rename the segments to lower ids, keeping \
                 their order, to write on",
            ),
        )
    })
}

pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".jsonl")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_name(7), "segment-00000000000000000007.jsonl");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("segment-7.jsonl"), None);
        assert_eq!(
            parse_segment_name("segment-0000000000000000000x.jsonl"),
            None
        );
    }
}
