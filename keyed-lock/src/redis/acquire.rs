//! Acquiring a lease, in four steps:
//!
//! 1. **Queue** in this process: each key has a FIFO queue (a [`MemoryBackend`] entry), and
//!    only its head talks to Redis. A waiter that had to queue fails at once, with the same
//!    error, if a Redis call on the key failed while it waited (see `failures.rs`).
//! 2. **Ask** Redis: one acquire script. Until its reply is read, an [`InFlight`] marks the
//!    attempt: dropped (the caller's future cancelled, the give-up time of `lock_timeout`
//!    reached, the call failed), it deletes in the background whatever lease the script may
//!    have been granted.
//! 3. **Granted**: the queue position goes into the lease, whose local deadline is the TTL
//!    less the drift margin, counted from when the script was sent.
//! 4. **Held** by another process: `Wait::No` is refused `Busy`, a call past its give-up time
//!    `TimedOut`; otherwise it sleeps a jittered exponential backoff (never past the holder's
//!    remaining TTL, and early enough for the last attempt's reply to arrive by the give-up
//!    time), then asks again (2).

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use super::RedisBackendError;
use super::failures::Registration;
use super::inner::{Attempt, Inner};
use super::lease::{LeaseState, RedisLease};
use super::renew;
use super::ttl::{lease_deadline, ttl_millis};
use crate::backend::{Grant, LockBackend, Refused, Wait};
use crate::memory::deadline_after;
use crate::{Busy, FencingToken, LockEvents, MemoryBackend, MemoryLease};

type Refusal = Refused<RedisBackendError>;

/// Acquires `key` (its TTL already checked) as `wait` allows; see the module docs.
pub(crate) async fn acquire(
    inner: &Arc<Inner>,
    key: &(dyn Display + Sync),
    ttl: Duration,
    wait: Wait,
    events: &LockEvents,
) -> Result<Grant<RedisLease>, Refusal> {
    let start = Instant::now();
    let lease_key = super::keys::lease_key(&inner.prefix, key);
    let acq = Acquisition {
        inner,
        events,
        fence_key: format!("{lease_key}:fence"),
        lease_key,
        ttl: Duration::from_millis(ttl_millis(ttl)),
        wait,
        give_up: match wait {
            Wait::For(d) => Some((deadline_after(start, d), d)),
            _ => None,
        },
        start,
    };

    // 1. The in-process queue.
    let (hold, _registration) = acq.queue().await?;
    let mut cap = inner.backoff.0;
    let mut contended = hold.queued;
    loop {
        // 2. Redis.
        let sent_at = Instant::now();
        match acq.ask(sent_at).await? {
            // 3.
            Attempt::Granted { token, value } => {
                return Ok(acq.granted(hold, sent_at, token, value, contended));
            }
            // 4.
            Attempt::Held { pttl, age } => {
                contended = true;
                sleep_until(acq.retry_at(sent_at, pttl, age, cap)?).await;
                cap = cap.saturating_mul(2).min(inner.backoff.1);
            }
        }
    }
}

/// What one acquisition knows about itself.
struct Acquisition<'a> {
    inner: &'a Arc<Inner>,
    events: &'a LockEvents,
    lease_key: String,
    fence_key: String,
    /// As sent: whole milliseconds.
    ttl: Duration,
    wait: Wait,
    /// `lock_timeout`'s give-up time, and the timeout it came from.
    give_up: Option<(Instant, Duration)>,
    start: Instant,
}

impl<'a> Acquisition<'a> {
    /// Step 1: the head of the key's in-process queue, and (if it had to queue) its
    /// registration for the failures of the calls ahead of it.
    async fn queue(&self) -> Result<(LocalHold<'a>, Option<Registration>), Refusal> {
        let local = &self.inner.local;
        let local_events = &self.inner.local_events;
        match local.try_acquire(&self.lease_key, Duration::MAX, local_events) {
            Ok(grant) => return Ok((LocalHold::new(self.inner, grant, false), None)),
            Err(busy) if self.wait == Wait::No => return Err(self.busy(busy)),
            Err(_) => {}
        }
        let registration = self.inner.failures.register(&self.lease_key);
        let grant = match local
            .acquire(&self.lease_key, Duration::MAX, self.wait, local_events)
            .await
        {
            Ok(grant) => grant,
            Err(Refused::Busy(busy)) => return Err(self.busy(busy)),
            Err(Refused::TimedOut) => return Err(self.timed_out()),
            Err(Refused::Backend(never)) => match never {},
        };
        let hold = LocalHold::new(self.inner, grant, true);
        // A call on this key failed while this waiter was queued: fail with it at once (the
        // next waiter then does the same), rather than starting another full command timeout.
        if let Some(e) = self
            .inner
            .failures
            .failed_since(&self.lease_key, self.start)
        {
            self.events.backend_error(&e);
            return Err(Refused::Backend(e));
        }
        Ok((hold, Some(registration)))
    }

    /// Step 2: one acquire script, sent at `sent_at` (now).
    async fn ask(&self, sent_at: Instant) -> Result<Attempt, Refusal> {
        if self.give_up.is_some_and(|(at, _)| sent_at >= at) {
            return Err(self.timed_out()); // nothing sent
        }
        let owner = self.inner.owner();
        let in_flight = InFlight {
            inner: self.inner,
            lease_key: &self.lease_key,
            owner: &owner,
        };
        let ttl_ms = ttl_millis(self.ttl);
        let grant = self
            .inner
            .try_grant(&self.lease_key, &self.fence_key, ttl_ms, &owner);
        let reply = match self.give_up {
            // `lock_timeout(d)` returns by `d`: an attempt still in flight then is abandoned.
            Some((at, _)) => match tokio::time::timeout_at(at, grant).await {
                Ok(reply) => reply,
                Err(_) => return Err(self.timed_out()),
            },
            None => grant.await,
        };
        match reply {
            Ok(attempt) => {
                in_flight.answered();
                Ok(attempt)
            }
            Err(e) => {
                drop(in_flight);
                self.events.backend_error(&e);
                self.inner.failures.record(&self.lease_key, &e);
                Err(Refused::Backend(e))
            }
        }
    }

    /// Step 3: the lease Redis granted to the script sent at `sent_at`.
    fn granted(
        &self,
        hold: LocalHold<'_>,
        sent_at: Instant,
        token: u64,
        value: String,
        contended: bool,
    ) -> Grant<RedisLease> {
        let deadline = lease_deadline(sent_at, self.ttl);
        let (local, local_token) = hold.keep();
        self.inner
            .local
            .set_deadline(local.hash(), local_token.get(), deadline);
        self.events.granted(contended.then(|| self.start.elapsed()));
        let token = FencingToken::new(token);
        let lease = RedisLease(Arc::new(LeaseState::new(
            self.lease_key.clone(),
            self.fence_key.clone(),
            value,
            token,
            self.ttl,
            sent_at,
            deadline,
            (local, local_token),
            self.events.clone(),
        )));
        if self.inner.auto_renew {
            renew::spawn(self.inner, &lease);
        }
        Grant::new(lease, token, sent_at, deadline)
    }

    /// Step 4: another process holds the key (for `pttl` more, since `age`): when to ask
    /// again, or why not.
    fn retry_at(
        &self,
        sent_at: Instant,
        pttl: Option<Duration>,
        age: Duration,
        cap: Duration,
    ) -> Result<Instant, Refusal> {
        let now = Instant::now();
        if self.wait == Wait::No {
            return Err(self.busy(Busy {
                held_since: now.checked_sub(age).unwrap_or(now),
                expires_at: deadline_after(now, pttl.unwrap_or(Duration::ZERO)),
            }));
        }
        let mut delay = self.inner.jitter(cap).max(Duration::from_millis(1));
        if let Some(pttl) = pttl {
            delay = delay.min(pttl.saturating_add(Duration::from_millis(1)));
        }
        let mut until = deadline_after(now, delay);
        if let Some((at, _)) = self.give_up {
            if now >= at {
                return Err(self.timed_out());
            }
            // The last attempt goes out early enough for its reply to arrive before the
            // give-up time (twice this round trip, plus 1 ms).
            let rtt = now.saturating_duration_since(sent_at);
            let last = at
                .checked_sub(rtt.saturating_mul(2) + Duration::from_millis(1))
                .unwrap_or(now);
            until = until.min(last.max(now));
        }
        Ok(until)
    }

    fn busy(&self, busy: Busy) -> Refusal {
        self.events.busy();
        Refused::Busy(busy)
    }

    fn timed_out(&self) -> Refusal {
        self.events
            .timed_out(self.give_up.map_or(Duration::ZERO, |(_, d)| d));
        Refused::TimedOut
    }
}

/// The head position in a key's in-process queue: released on drop, unless
/// [`keep`](Self::keep) hands it to a lease.
struct LocalHold<'a> {
    local: &'a MemoryBackend<String>,
    events: &'a LockEvents,
    lease: MemoryLease,
    token: FencingToken,
    /// Whether the caller had to queue behind another waiter of this process.
    queued: bool,
}

impl<'a> LocalHold<'a> {
    fn new(inner: &'a Inner, grant: Grant<MemoryLease>, queued: bool) -> Self {
        Self {
            local: &inner.local,
            events: &inner.local_events,
            lease: grant.lease,
            token: grant.token,
            queued,
        }
    }

    /// The position, kept: the caller's lease releases it.
    fn keep(self) -> (MemoryLease, FencingToken) {
        let parts = (self.lease, self.token);
        // Nothing to free: the fields are references and copies.
        std::mem::forget(self);
        parts
    }
}

impl Drop for LocalHold<'_> {
    fn drop(&mut self) {
        self.local.release(&self.lease, self.token, self.events);
    }
}

/// An acquire script in flight: dropped before its reply was read (cancelled, timed out,
/// failed), it deletes in the background whatever lease the script may have been granted.
struct InFlight<'a> {
    inner: &'a Arc<Inner>,
    lease_key: &'a str,
    owner: &'a str,
}

impl InFlight<'_> {
    /// The reply was read: nothing to clean up.
    fn answered(self) {
        // Nothing to free: the fields are references.
        std::mem::forget(self);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.inner
            .spawn_abandon(self.lease_key.to_owned(), self.owner.to_owned());
    }
}
