//! The RAII claim on a key's next fire.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use crate::Fire;
use crate::store::Inner;

/// The right to send the next event for one key, won by
/// [`Cooldown::reserve`](crate::Cooldown::reserve).
///
/// While it lives, every other event for the key is suppressed (and counted),
/// so two tasks can never both send. [`commit`](Self::commit) after the send
/// succeeded starts the window. Dropping it without commit (the send failed,
/// or the future holding it was cancelled) rolls back: the next event for the
/// key may fire at once, and the suppressed events this reservation was going
/// to report go back into the key's digest, so none is lost.
#[must_use = "dropping a reservation rolls it back; call `commit()` once the send succeeded"]
pub struct Reservation<K: Hash + Eq + Clone, P = ()> {
    inner: Arc<Inner<K, P>>,
    key: K,
    hash: u64,
    token: u32,
    fire: Fire<P>,
    committed: bool,
}

impl<K: Hash + Eq + Clone, P> Reservation<K, P> {
    pub(crate) fn new(
        inner: Arc<Inner<K, P>>,
        key: K,
        hash: u64,
        token: u32,
        fire: Fire<P>,
    ) -> Self {
        Self {
            inner,
            key,
            hash,
            token,
            fire,
            committed: false,
        }
    }

    /// What this send should report: the suppressed events since the key
    /// last fired, and when that was.
    ///
    /// # Examples
    ///
    /// ```
    /// let cooldown = seawall_cooldown::Cooldown::<String>::new();
    /// let r = cooldown.reserve("disk").unwrap();
    /// assert_eq!(r.fire().suppressed_since_last, 0);
    /// r.commit();
    /// ```
    pub fn fire(&self) -> &Fire<P> {
        &self.fire
    }

    /// The key this reservation is for.
    ///
    /// # Examples
    ///
    /// ```
    /// let cooldown = seawall_cooldown::Cooldown::<String>::new();
    /// let r = cooldown.reserve("disk").unwrap();
    /// assert_eq!(r.key(), "disk");
    /// ```
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Marks the send as done: the key's window starts now, and the digest in
    /// [`fire`](Self::fire) counts as reported.
    ///
    /// If the key was evicted meanwhile (`max_keys` pressure), it is tracked
    /// again so its window still starts.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cooldown = seawall_cooldown::Cooldown::builder().build().unwrap();
    /// let reservation = cooldown.reserve(&"db-down").expect("first event wins");
    /// // ... the send succeeded ...
    /// reservation.commit();
    /// assert!(cooldown.check(&"db-down").is_suppressed());
    /// # }
    /// ```
    pub fn commit(mut self) {
        self.committed = true;
        self.inner.commit(&self.key, self.hash, self.token);
    }

    /// Gives the reservation back without sending, the same as dropping it:
    /// the next event for the key may fire.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cooldown = seawall_cooldown::Cooldown::builder().build().unwrap();
    /// let reservation = cooldown.reserve(&"db-down").unwrap();
    /// assert!(cooldown.check(&"db-down").is_suppressed()); // send in flight
    /// reservation.rollback(); // the send failed
    /// let fire = cooldown.check(&"db-down").fire().unwrap();
    /// assert_eq!(fire.suppressed_since_last, 1);
    /// # }
    /// ```
    pub fn rollback(self) {
        drop(self);
    }
}

impl<K: Hash + Eq + Clone, P> Drop for Reservation<K, P> {
    fn drop(&mut self) {
        if !self.committed {
            let digest = self.fire.digest.take();
            self.inner
                .rollback(&self.key, self.hash, self.token, digest);
        }
    }
}

impl<K: Hash + Eq + Clone, P> fmt::Debug for Reservation<K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("cooldown", &self.inner.name())
            .field("token", &self.token)
            .field("suppressed_since_last", &self.fire.suppressed_since_last)
            .field("last_fired", &self.fire.last_fired)
            .finish_non_exhaustive()
    }
}
