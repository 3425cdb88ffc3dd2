//! Fencing tokens.

use std::fmt;

/// A number carried by every grant of a lease, strictly increasing per key.
///
/// A lease can end without its holder noticing (the holder stalled past its TTL and the next
/// waiter took over). Mutual exclusion alone cannot stop such a stale holder from writing: its
/// write may already be on the wire. The token can. Pass it along with every write made under
/// the lock, and let the store remember the highest token it has accepted per key and reject
/// anything lower:
///
/// ```text
/// UPDATE users SET balance = $1, lock_token = $2
///  WHERE id = $3 AND lock_token <= $2      -- a stale holder's token is lower: 0 rows
/// ```
///
/// Tokens come from a counter of the lock instance (one per shard for the in-memory backend), so
/// for one key every later grant carries a larger token than every earlier one, including grants
/// made after the key's entry was removed and created again. They are not dense: gaps are normal.
/// They restart when the process restarts; a store that outlives the process should use a
/// backend whose tokens are durable, or compare tokens only within one process lifetime.
///
/// # Examples
///
/// ```
/// use seawall_keyed_lock::KeyedLock;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let locks = KeyedLock::<u64>::new();
/// let first = locks.lock(&7).await.token();
/// let second = locks.lock(&7).await.token();
/// assert!(second > first);
/// assert!(second.get() > first.get());
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(u64);

impl FencingToken {
    /// Wraps a raw token value (for backends and for tokens read back from a store).
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_keyed_lock::FencingToken;
    /// assert!(FencingToken::new(2) > FencingToken::new(1));
    /// ```
    #[must_use]
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The raw value, to store next to the data it fences.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(seawall_keyed_lock::FencingToken::new(7).get(), 7);
    /// ```
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl From<FencingToken> for u64 {
    fn from(token: FencingToken) -> Self {
        token.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
