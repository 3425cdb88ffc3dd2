//! What [`Cooldown`](crate::Cooldown) answers for an event.

use std::time::Duration;

use tokio::time::Instant;

/// The answer to one event: fire it, or suppress it and say for how long.
///
/// Returned by [`Cooldown::check`](crate::Cooldown::check) and
/// [`Cooldown::check_with`](crate::Cooldown::check_with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<P = ()> {
    /// Send the event: it is the first for its key, or the first after a
    /// window ended. A new window starts now.
    Fire(Fire<P>),
    /// Drop the event: the key's window is still open (or a send for the key
    /// is in flight). The event is counted and reported by a later digest.
    Suppressed(Suppressed),
}

impl<P> Decision<P> {
    /// True for [`Decision::Fire`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cooldown = seawall_cooldown::Cooldown::builder().build().unwrap();
    /// assert!(cooldown.check(&"disk-full").is_fire());
    /// assert!(!cooldown.check(&"disk-full").is_fire());
    /// # }
    /// ```
    pub fn is_fire(&self) -> bool {
        matches!(self, Decision::Fire(_))
    }

    /// True for [`Decision::Suppressed`].
    ///
    /// # Examples
    ///
    /// ```
    /// let cooldown = seawall_cooldown::Cooldown::<&str>::new();
    /// assert!(!cooldown.check(&"k").is_suppressed());
    /// assert!(cooldown.check(&"k").is_suppressed());
    /// ```
    pub fn is_suppressed(&self) -> bool {
        matches!(self, Decision::Suppressed(_))
    }

    /// The fire, if this decision is one.
    ///
    /// # Examples
    ///
    /// ```
    /// let cooldown = seawall_cooldown::Cooldown::<&str>::new();
    /// let fire = cooldown.check(&"k").fire().expect("first event fires");
    /// assert_eq!(fire.suppressed_since_last, 0);
    /// assert!(cooldown.check(&"k").fire().is_none());
    /// ```
    pub fn fire(self) -> Option<Fire<P>> {
        match self {
            Decision::Fire(fire) => Some(fire),
            Decision::Suppressed(_) => None,
        }
    }

    /// The suppression, if this decision is one.
    ///
    /// # Examples
    ///
    /// ```
    /// let cooldown = seawall_cooldown::Cooldown::<&str>::new();
    /// assert!(cooldown.check(&"k").suppressed().is_none());
    /// assert_eq!(cooldown.check(&"k").suppressed().unwrap().suppressed, 1);
    /// ```
    pub fn suppressed(&self) -> Option<Suppressed> {
        match self {
            Decision::Fire(_) => None,
            Decision::Suppressed(s) => Some(*s),
        }
    }
}

/// An event that should be sent, with what was suppressed before it.
///
/// Every suppressed event is reported exactly once: in the digest of the next
/// fire for its key, or by [`Cooldown::drain_digests`](crate::Cooldown::drain_digests)
/// if the key went quiet first.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fire<P = ()> {
    /// Suppressed events this fire reports (`digest.count`, or 0).
    pub suppressed_since_last: u64,
    /// When the key last fired, if the cooldown still remembers it: `None`
    /// for a key that never fired, or that the cooldown forgot. A key is
    /// forgotten only once its window is over with nothing left to report
    /// (or when evicted under [`max_keys`](crate::CooldownBuilder::max_keys)
    /// pressure), so a fire reporting a digest of a window always has it.
    pub last_fired: Option<Instant>,
    /// The suppressed events this fire reports, if any.
    pub digest: Option<Digest<P>>,
    /// True when a critical event fired although the key was inside its
    /// window or a send was in flight (see
    /// [`Cooldown::check_critical`](crate::Cooldown::check_critical)).
    pub bypassed: bool,
    /// True when the decision was not made by the shared store because it
    /// could not be reached, and the store's unreachable policy fired the
    /// event (`RedisCooldown`, feature `redis`). Always false for the
    /// in-memory [`Cooldown`](crate::Cooldown).
    pub degraded: bool,
}

/// An event that should be dropped, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Suppressed {
    /// Time until the key's window ends. While a send for the key is in
    /// flight (a [`Reservation`](crate::Reservation) not yet committed) the
    /// window has not started, and this is the whole window: an upper bound.
    pub remaining: Duration,
    /// Events suppressed for this key and not yet reported, this one included.
    pub suppressed: u64,
    /// True when the shared store could not be reached and its unreachable
    /// policy suppressed the event (`RedisCooldown`, feature `redis`): then
    /// `remaining` is zero and `suppressed` is 0, because neither is known,
    /// and the event is counted nowhere. Always false for the in-memory
    /// [`Cooldown`](crate::Cooldown).
    pub degraded: bool,
}

impl std::fmt::Display for Suppressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.degraded {
            return f.write_str(
                "suppressed by the cooldown's unreachable policy (its store did not answer)",
            );
        }
        write!(
            f,
            "suppressed by cooldown ({} pending, {:?} remaining)",
            self.suppressed, self.remaining
        )
    }
}

impl std::error::Error for Suppressed {}

/// Suppressed events of one key, summarised: "12 more like this since 04:10".
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Digest<P = ()> {
    /// Number of suppressed events, at least 1.
    pub count: u64,
    /// When the earliest of them happened.
    pub first_suppressed: Instant,
    /// When the latest of them happened.
    pub last_suppressed: Instant,
    /// When the key fired before them, if the cooldown remembered it.
    pub last_fired: Option<Instant>,
    /// The payload of the latest suppressed event that carried one
    /// (see [`Cooldown::check_with`](crate::Cooldown::check_with)).
    pub last_payload: Option<P>,
}
