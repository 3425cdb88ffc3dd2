//! Durability policy.

use std::time::Duration;

/// When an appended record is made durable (fdatasync) and acknowledged.
///
/// A record is acknowledged (its `append` returns `Ok`) only once its policy is met.
///
/// | policy | survives a process crash | survives power loss / kernel panic | cost |
/// |---|---|---|---|
/// | [`Durability::Always`] | yes | yes | one `fdatasync` per record |
/// | [`Durability::Batch`] | yes | yes | one `fdatasync` per group |
/// | [`Durability::Never`] | yes | **no**: up to the kernel's dirty write-back delay (typically 30 s on Linux) | none |
///
/// With every policy the bytes are handed to the kernel (`write(2)`) before the record is
/// acknowledged, so killing the process never loses an acknowledged record. Segments are
/// fsynced when they are sealed and when the spool is closed.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seawall_fallback_sink::Durability;
///
/// // Group commit: wait up to 2 ms for up to 128 records to share one fdatasync.
/// let group = Durability::Batch { max_records: 128, max_delay: Duration::from_millis(2) };
/// assert_ne!(group, Durability::default());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fdatasync` after each record, before acknowledging it. Records never share a sync.
    Always,
    /// Group commit: the first record of a group waits up to `max_delay` for others (at most
    /// `max_records` in total, counting itself); the group is written with one `write` and
    /// made durable with one `fdatasync`, then every record in it is acknowledged.
    ///
    /// With `max_delay` zero nothing waits on a timer: the group is whatever queued up while
    /// the previous `fdatasync` was running, which is the classic database group commit,
    /// plus the appenders that group acknowledged coming straight back (the writer gives
    /// them a few scheduler turns, or on a multi-thread runtime up to 100 µs outside the
    /// runtime, so writers that each wait for their acknowledgement share one `fdatasync`
    /// instead of splitting into two cohorts that take turns).
    Batch {
        /// Largest group: `1..=`[`Durability::MAX_GROUP`].
        max_records: usize,
        /// Longest time the first record of a group waits for company: at most
        /// [`Durability::MAX_DELAY`].
        max_delay: Duration,
    },
    /// Never `fdatasync` while appending (only when a segment is sealed and on close).
    /// Acknowledged records survive a crash of the process but not of the machine.
    Never,
}

impl Durability {
    /// The largest `Batch::max_records` a builder accepts.
    pub const MAX_GROUP: usize = 65_536;
    /// The longest `Batch::max_delay` a builder accepts (a group commit that waits longer
    /// than this is a misconfiguration, not a policy).
    pub const MAX_DELAY: Duration = Duration::from_secs(10);
}

impl Default for Durability {
    /// `Durability::Batch { max_records: 64, max_delay: 0 }`: group commit without added latency.
    fn default() -> Self {
        Durability::Batch {
            max_records: 64,
            max_delay: Duration::ZERO,
        }
    }
}
