//! The per-key decision logic, kept free of any store, lock or clock.
//!
//! Every decision the cooldown makes is a transition of one small [`KeyState`]
//! record given `now` and the window length, both in *ticks* (nanoseconds since
//! an epoch the store chooses). The in-memory store in [`crate::Cooldown`] keeps
//! one record per key behind a sharded mutex (`crate::store`). The Redis backend
//! (feature `redis`) keeps the same fields in a hash per key and makes the same
//! transitions inside its Lua scripts, on the server's clock; nothing here reads
//! a clock, allocates, or knows about other keys.
//!
//! The record answers four questions:
//! - is a window open (`fired_at + window > now`)?
//! - is a send in flight (`reservation != 0`)?
//! - how many events were suppressed and not yet reported (`count`)?
//! - is there anything left to remember (`is_dead`), so the store may forget it?

/// Suppressed events not yet reported to anyone: the raw form of a
/// [`Digest`](crate::Digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending<P> {
    /// Number of suppressed events, at least 1.
    pub(crate) count: u64,
    /// Tick of the earliest suppressed event.
    pub(crate) first: u64,
    /// Tick of the latest suppressed event.
    pub(crate) last: u64,
    /// Payload of the latest suppressed event that carried one.
    pub(crate) payload: Option<P>,
}

impl<P> Pending<P> {
    /// Folds `older` (taken out earlier, e.g. by a reservation that rolled
    /// back) into `self`, keeping the newest payload.
    fn absorb(&mut self, older: Pending<P>) {
        self.count = self.count.saturating_add(older.count);
        self.first = self.first.min(older.first);
        self.last = self.last.max(older.last);
        if self.payload.is_none() {
            self.payload = older.payload;
        }
    }
}

/// What a key's record remembers between events.
///
/// Flat and small on purpose (40 bytes with `P = ()`): the suppressed path of
/// an alert storm is one cache miss on this record, so every byte counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyState<P> {
    /// Tick at which the current (or last) window started, [`NEVER`] if none.
    fired_at: u64,
    /// Tick of the earliest unreported suppressed event (valid if `count > 0`).
    first: u64,
    /// Tick of the latest unreported suppressed event (valid if `count > 0`).
    last: u64,
    /// Unreported suppressed events.
    count: u64,
    /// Token of the reservation in flight, 0 when none.
    reservation: u32,
    /// Payload of the latest unreported suppressed event that carried one.
    payload: Option<P>,
}

/// `fired_at` of a key that never fired.
const NEVER: u64 = u64::MAX;

/// A fire, before ticks are turned back into instants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawFire<P> {
    /// When the key fired before this one, if the record remembered it.
    pub(crate) last_fired: Option<u64>,
    /// Suppressed events this fire reports (taken out of the record).
    pub(crate) digest: Option<Pending<P>>,
    /// True when a critical event fired inside a window or during a send.
    pub(crate) bypassed: bool,
}

/// A suppression, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawSuppressed {
    /// Ticks until the window ends (the whole window while a send is in flight).
    pub(crate) remaining: u64,
    /// Events suppressed since the key last reported, this one included.
    pub(crate) suppressed: u64,
}

/// The outcome of [`KeyState::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict<P> {
    Fire(RawFire<P>),
    Suppressed(RawSuppressed),
}

impl<P> Default for KeyState<P> {
    fn default() -> Self {
        Self {
            fired_at: NEVER,
            first: 0,
            last: 0,
            count: 0,
            reservation: 0,
            payload: None,
        }
    }
}

impl<P> KeyState<P> {
    /// Tick at which the current (or last) window started.
    pub(crate) fn fired_at(&self) -> Option<u64> {
        (self.fired_at != NEVER).then_some(self.fired_at)
    }

    /// Unreported suppressed events.
    pub(crate) fn pending_count(&self) -> u64 {
        self.count
    }

    /// Tick at which the current window ends, if the key ever fired.
    fn window_end(&self, window: u64) -> Option<u64> {
        self.fired_at().map(|at| at.saturating_add(window))
    }

    /// Takes the unreported suppressed events out of the record.
    fn take_pending(&mut self) -> Option<Pending<P>> {
        if self.count == 0 {
            return None;
        }
        let pending = Pending {
            count: self.count,
            first: self.first,
            last: self.last,
            payload: self.payload.take(),
        };
        self.count = 0;
        Some(pending)
    }

    /// True while the window opened by the last fire is still running.
    pub(crate) fn in_window(&self, now: u64, window: u64) -> bool {
        self.window_end(window).is_some_and(|end| end > now)
    }

    /// True while a reservation (a send) is in flight.
    pub(crate) fn is_reserved(&self) -> bool {
        self.reservation != 0
    }

    /// True when an event arriving now would be suppressed.
    fn blocks(&self, now: u64, window: u64) -> bool {
        self.in_window(now, window) || self.is_reserved()
    }

    /// Nothing left to remember: no open window, no send in flight, nothing
    /// to report. The store may forget such a key; an event for it later
    /// fires exactly as if it had been kept (only `last_fired` is lost).
    pub(crate) fn is_dead(&self, now: u64, window: u64) -> bool {
        !self.blocks(now, window) && self.count == 0
    }

    /// Latest tick at which anything happened to the key.
    pub(crate) fn last_seen(&self) -> u64 {
        let fired = self.fired_at().unwrap_or(0);
        let suppressed = if self.count > 0 { self.last } else { 0 };
        fired.max(suppressed)
    }

    /// Counts one suppressed event.
    ///
    /// `payload` is called only here, so a caller can clone its payload only
    /// for events that are actually suppressed.
    fn suppress(
        &mut self,
        now: u64,
        window: u64,
        payload: impl FnOnce() -> Option<P>,
    ) -> RawSuppressed {
        let payload = payload();
        if self.count == 0 {
            self.first = now;
            self.last = now;
            self.payload = None;
        } else {
            self.first = self.first.min(now);
            self.last = self.last.max(now);
        }
        self.count = self.count.saturating_add(1);
        if payload.is_some() {
            self.payload = payload;
        }
        let suppressed = self.count;
        let remaining = match self.window_end(window) {
            Some(end) if end > now => end - now,
            _ => window,
        };
        RawSuppressed {
            remaining,
            suppressed,
        }
    }

    /// Starts a window at `now` and hands out what it reports.
    fn fire(&mut self, now: u64, bypassed: bool) -> RawFire<P> {
        let last_fired = self.fired_at();
        self.fired_at = now;
        RawFire {
            last_fired,
            digest: self.take_pending(),
            bypassed,
        }
    }

    /// One event: fires (starting a window) unless a window is open or a send
    /// is in flight, in which case the event is counted as suppressed.
    pub(crate) fn check(
        &mut self,
        now: u64,
        window: u64,
        payload: impl FnOnce() -> Option<P>,
    ) -> Verdict<P> {
        if self.blocks(now, window) {
            Verdict::Suppressed(self.suppress(now, window, payload))
        } else {
            Verdict::Fire(self.fire(now, false))
        }
    }

    /// A critical event: always fires and starts a window, reporting the
    /// pending digest; `bypassed` says whether it would have been suppressed.
    pub(crate) fn bypass(&mut self, now: u64, window: u64) -> RawFire<P> {
        let bypassed = self.blocks(now, window);
        self.fire(now, bypassed)
    }

    /// Claims the right to send. Wins when [`check`](Self::check) would fire;
    /// the window does not start until [`commit`](Self::commit). The pending
    /// digest moves into the returned fire; a rollback gives it back.
    pub(crate) fn reserve(
        &mut self,
        now: u64,
        window: u64,
        payload: impl FnOnce() -> Option<P>,
        token: u32,
    ) -> Result<RawFire<P>, RawSuppressed> {
        if self.blocks(now, window) {
            return Err(self.suppress(now, window, payload));
        }
        self.reservation = token;
        Ok(RawFire {
            last_fired: self.fired_at(),
            digest: self.take_pending(),
            bypassed: false,
        })
    }

    /// The send succeeded: the window starts at `now`. Ends the reservation
    /// only if `token` still owns it (the record may have been evicted and
    /// re-created meanwhile); the window starts either way, because the alert
    /// did go out.
    pub(crate) fn commit(&mut self, now: u64, token: u32) {
        if self.reservation == token {
            self.reservation = 0;
        }
        self.fired_at = self.fired_at().map_or(now, |at| at.max(now));
    }

    /// The send failed or was abandoned: the key may fire again at once, and
    /// the digest the reservation took is given back so no count is lost.
    /// Returns whether `token` still owned the reservation.
    pub(crate) fn rollback(&mut self, token: u32, digest: Option<Pending<P>>) -> bool {
        let owned = self.reservation == token;
        if owned {
            self.reservation = 0;
        }
        if let Some(older) = digest {
            let merged = match self.take_pending() {
                Some(mut current) => {
                    current.absorb(older);
                    current
                }
                None => older,
            };
            self.count = merged.count;
            self.first = merged.first;
            self.last = merged.last;
            self.payload = merged.payload;
        }
        owned
    }

    /// Adds the suppressions a hot cell counted while this record was frozen
    /// (`crate::hot`): `count` more events, the latest at tick `latest`. The
    /// cell was installed only with a pending count, so `first` stands.
    pub(crate) fn absorb_hot(&mut self, count: u64, latest: u64) {
        debug_assert!(
            self.count > 0,
            "a hot cell is installed only with a pending count"
        );
        self.count = self.count.saturating_add(count);
        self.last = self.last.max(latest);
    }

    /// Tick at which the current window ends, if a window is open at `now`
    /// and no send is in flight: when a hot cell may count for this record.
    pub(crate) fn hot_window_end(&self, now: u64, window: u64) -> Option<u64> {
        if self.is_reserved() || self.count == 0 {
            return None;
        }
        self.window_end(window).filter(|&end| end > now)
    }

    /// Takes the digest of a key whose window ended (and with no send in
    /// flight), for keys that went quiet.
    pub(crate) fn take_ready_digest(&mut self, now: u64, window: u64) -> Option<Pending<P>> {
        if self.blocks(now, window) {
            None
        } else {
            self.take_pending()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 100;

    fn fire(state: &mut KeyState<&'static str>, now: u64) -> RawFire<&'static str> {
        match state.check(now, W, || None) {
            Verdict::Fire(f) => f,
            Verdict::Suppressed(s) => panic!("expected fire at {now}, got {s:?}"),
        }
    }

    fn suppressed(
        state: &mut KeyState<&'static str>,
        now: u64,
        p: Option<&'static str>,
    ) -> RawSuppressed {
        match state.check(now, W, || p) {
            Verdict::Suppressed(s) => s,
            Verdict::Fire(f) => panic!("expected suppression at {now}, got {f:?}"),
        }
    }

    #[test]
    fn record_stays_small() {
        assert_eq!(std::mem::size_of::<KeyState<()>>(), 40);
    }

    #[test]
    fn window_arithmetic_fire_suppress_fire() {
        let mut s = KeyState::default();
        assert_eq!(
            fire(&mut s, 10),
            RawFire {
                last_fired: None,
                digest: None,
                bypassed: false
            }
        );
        assert_eq!(
            suppressed(&mut s, 10, Some("a")),
            RawSuppressed {
                remaining: 100,
                suppressed: 1
            }
        );
        assert_eq!(
            suppressed(&mut s, 60, None),
            RawSuppressed {
                remaining: 50,
                suppressed: 2
            }
        );
        assert_eq!(
            suppressed(&mut s, 109, Some("b")),
            RawSuppressed {
                remaining: 1,
                suppressed: 3
            }
        );
        // The window is half-open: [10, 110).
        assert_eq!(
            fire(&mut s, 110),
            RawFire {
                last_fired: Some(10),
                digest: Some(Pending {
                    count: 3,
                    first: 10,
                    last: 109,
                    payload: Some("b")
                }),
                bypassed: false
            }
        );
        assert!(!s.is_dead(110, W));
        assert!(s.is_dead(210, W));
    }

    #[test]
    fn reservation_blocks_until_commit_and_rollback_restores_digest() {
        let mut s = KeyState::default();
        fire(&mut s, 0);
        suppressed(&mut s, 5, Some("x"));
        let won = s.reserve(100, W, || None, 7).expect("window over");
        assert_eq!(won.digest.as_ref().map(|d| d.count), Some(1));
        // A second claimant and a plain check both lose while the send is in flight.
        assert_eq!(
            s.reserve(101, W, || None, 8),
            Err(RawSuppressed {
                remaining: W,
                suppressed: 1
            })
        );
        assert_eq!(suppressed(&mut s, 102, Some("y")).suppressed, 2);
        assert!(s.rollback(7, won.digest));
        let p = s.clone().take_pending().expect("restored");
        assert_eq!(
            (p.count, p.first, p.last, p.payload),
            (3, 5, 102, Some("y"))
        );
        // Rolled back: the next event fires and reports all three.
        assert_eq!(fire(&mut s, 103).digest.map(|d| d.count), Some(3));
    }

    #[test]
    fn commit_starts_window_at_commit_time() {
        let mut s: KeyState<()> = KeyState::default();
        assert!(s.reserve(0, W, || None, 1).is_ok());
        s.commit(40, 1);
        assert!(!s.is_reserved());
        assert!(s.in_window(139, W));
        assert!(!s.in_window(140, W));
        // A stale token neither clears someone else's reservation nor fails.
        assert!(s.reserve(140, W, || None, 2).is_ok());
        s.commit(150, 1);
        assert!(s.is_reserved());
        assert!(!s.rollback(1, None));
        assert!(s.is_reserved());
    }

    #[test]
    fn bypass_fires_inside_window_and_reports() {
        let mut s = KeyState::default();
        assert!(!s.bypass(0, W).bypassed);
        suppressed(&mut s, 1, None);
        let f = s.bypass(2, W);
        assert!(f.bypassed);
        assert_eq!(f.last_fired, Some(0));
        assert_eq!(f.digest.map(|d| d.count), Some(1));
        assert!(s.in_window(101, W));
    }

    #[test]
    fn ready_digest_only_after_window() {
        let mut s = KeyState::default();
        fire(&mut s, 0);
        suppressed(&mut s, 1, None);
        assert_eq!(s.last_seen(), 1);
        assert_eq!(s.take_ready_digest(99, W), None);
        assert_eq!(s.take_ready_digest(100, W).map(|d| d.count), Some(1));
        assert!(s.is_dead(100, W));
        assert_eq!(s.last_seen(), 0);
    }
}
