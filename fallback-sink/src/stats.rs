//! A snapshot of the spool's backlog.

use std::time::{Duration, SystemTime};

use crate::layout::Position;

/// A snapshot of the spool's backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Records appended and not yet committed.
    pub records: u64,
    /// Their bytes on disk.
    pub bytes: u64,
    /// Creation time of the oldest of them (an upper bound on its age when it was appended
    /// after the last read).
    pub oldest: Option<SystemTime>,
    /// Segment files on disk.
    pub segments: u64,
    /// Lines moved to `quarantine.jsonl` since this spool was opened.
    pub quarantined: u64,
    /// The committed checkpoint.
    pub checkpoint: Position,
}

impl Stats {
    /// How long the oldest record has waited, by the wall clock (`None` when empty).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use seawall_fallback_sink::{Envelope, Spool};
    /// let dir = tempfile::tempdir()?;
    /// let spool = Spool::open(dir.path()).await?;
    /// assert_eq!(spool.stats().oldest_age(), None);
    /// spool.append(&Envelope::new(1)).await?;
    /// assert!(spool.stats().oldest_age().is_some());
    /// # Ok(()) }
    /// ```
    pub fn oldest_age(&self) -> Option<Duration> {
        self.oldest.map(|t| {
            SystemTime::now()
                .duration_since(t)
                .unwrap_or(Duration::ZERO)
        })
    }
}
