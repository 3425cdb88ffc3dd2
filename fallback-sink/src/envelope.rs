//! The record envelope.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A record with its idempotency key and creation time.
///
/// The `id` is a UUIDv7 made when the record enters the sink; it stays the same whether the
/// record reaches the primary directly or after any number of replays, so a primary that
/// stores it with a unique constraint sees every record exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Idempotency key (UUIDv7: time-ordered).
    pub id: Uuid,
    /// Wall-clock creation time.
    pub timestamp: SystemTime,
    /// The record itself.
    pub payload: T,
}

impl<T> Envelope<T> {
    /// Wraps `payload` with a fresh UUIDv7 and the current wall-clock time.
    ///
    /// The id's random bits come from a thread-local CSPRNG seeded from the operating system
    /// (no system call per envelope).
    ///
    /// # Examples
    ///
    /// ```
    /// let e = seawall_fallback_sink::Envelope::new("hello");
    /// assert_eq!(e.id.get_version_num(), 7);
    /// ```
    pub fn new(payload: T) -> Self {
        Envelope {
            id: Uuid::now_v7(),
            timestamp: SystemTime::now(),
            payload,
        }
    }

    /// Milliseconds since the Unix epoch (0 for times before it).
    ///
    /// # Examples
    ///
    /// ```
    /// let e = seawall_fallback_sink::Envelope::new(());
    /// assert!(e.timestamp_ms() > 1_700_000_000_000);
    /// ```
    pub fn timestamp_ms(&self) -> u64 {
        to_ms(self.timestamp)
    }
}

pub(crate) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}
