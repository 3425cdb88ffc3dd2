//! A lease held in Redis, as this process sees it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::{FencingToken, LockEvents, MemoryLease};

/// The Redis backend's handle to one lease: its Redis keys, the value that proves ownership,
/// and the locally computed deadline (which auto-renewal moves).
#[derive(Clone)]
pub struct RedisLease(pub(crate) Arc<LeaseState>);

impl fmt::Debug for RedisLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = *self.0.status.borrow();
        f.debug_struct("RedisLease")
            .field("key", &self.0.lease_key)
            .field("token", &self.0.token)
            .field("deadline", &status.deadline)
            .field("gone", &status.gone)
            .finish()
    }
}

impl RedisLease {
    /// The Redis key of the lease (`<prefix>{<key>}`, see
    /// [`RedisBackend::lease_key`](crate::RedisBackend::lease_key)).
    ///
    /// # Examples
    ///
    /// Needs a Redis server (`no_run`):
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use seawall_keyed_lock::{KeyedLock, RedisBackend};
    /// let backend = RedisBackend::builder("redis://127.0.0.1:6379/").build().unwrap();
    /// let locks = KeyedLock::<String>::builder().build_with_backend(backend).unwrap();
    /// let guard = locks.lock("alice").await.unwrap();
    /// assert_eq!(guard.lease().redis_key(), "seawall:lock:{alice}");
    /// # }
    /// ```
    #[must_use]
    pub fn redis_key(&self) -> &str {
        &self.0.lease_key
    }

    /// The value stored at the lease key while this lease is live
    /// (`<token>:<granted at, server µs>:<owner>`).
    ///
    /// # Examples
    ///
    /// Needs a Redis server (`no_run`):
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use seawall_keyed_lock::{KeyedLock, RedisBackend};
    /// let backend = RedisBackend::builder("redis://127.0.0.1:6379/").build().unwrap();
    /// let locks = KeyedLock::<String>::builder().build_with_backend(backend).unwrap();
    /// let guard = locks.lock("alice").await.unwrap();
    /// // `<token>:<granted at, server µs>:<owner>`
    /// assert!(guard.lease().value().starts_with(&format!("{}:", guard.token().get())));
    /// # }
    /// ```
    #[must_use]
    pub fn value(&self) -> &str {
        &self.0.value
    }
}

#[derive(Debug, Clone, Copy)]
struct Status {
    deadline: Instant,
    /// Known to be no longer ours (another holder, or the key vanished).
    gone: bool,
}

pub(crate) struct LeaseState {
    pub(crate) lease_key: String,
    pub(crate) fence_key: String,
    pub(crate) value: String,
    pub(crate) token: FencingToken,
    pub(crate) ttl: Duration,
    pub(crate) acquired_at: Instant,
    /// The in-process FIFO lease held alongside.
    pub(crate) local: MemoryLease,
    pub(crate) local_token: FencingToken,
    pub(crate) events: LockEvents,
    status: watch::Sender<Status>,
    watchdog: Mutex<Option<AbortHandle>>,
    released: AtomicBool,
}

impl LeaseState {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        lease_key: String,
        fence_key: String,
        value: String,
        token: FencingToken,
        ttl: Duration,
        acquired_at: Instant,
        deadline: Instant,
        local: (MemoryLease, FencingToken),
        events: LockEvents,
    ) -> Self {
        Self {
            lease_key,
            fence_key,
            value,
            token,
            ttl,
            acquired_at,
            local: local.0,
            local_token: local.1,
            events,
            status: watch::Sender::new(Status {
                deadline,
                gone: false,
            }),
            watchdog: Mutex::new(None),
            released: AtomicBool::new(false),
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.status.borrow().deadline
    }

    pub(crate) fn is_gone(&self) -> bool {
        self.status.borrow().gone
    }

    /// The lease was renewed until `deadline`. Refused (`false`) once it is known gone or
    /// when its local deadline passed while the renewal was in flight: `lost()` may already
    /// have resolved, and an expired lease is never revived.
    pub(crate) fn renewed(&self, deadline: Instant) -> bool {
        let now = Instant::now();
        let mut accepted = false;
        self.status.send_if_modified(|s| {
            if s.gone || s.deadline <= now {
                return false;
            }
            s.deadline = deadline;
            accepted = true;
            true
        });
        accepted
    }

    /// The lease is known not to be ours any more, since `at`.
    pub(crate) fn mark_gone(&self, at: Instant) {
        self.status.send_modify(|s| {
            s.gone = true;
            s.deadline = s.deadline.min(at);
        });
    }

    /// Marks the lease released; `false` if it already was.
    pub(crate) fn start_release(&self) -> bool {
        if self.released.swap(true, Ordering::AcqRel) {
            return false;
        }
        if let Some(watchdog) = self.watchdog.lock().take() {
            watchdog.abort();
        }
        true
    }

    pub(crate) fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    pub(crate) fn set_watchdog(&self, handle: AbortHandle) {
        let mut slot = self.watchdog.lock();
        if self.is_released() {
            handle.abort();
        } else {
            *slot = Some(handle);
        }
    }

    /// Resolves when the local deadline passes (following renewals) or the lease is found
    /// gone; yields the deadline it had.
    pub(crate) async fn lost(&self) -> Instant {
        let mut rx = self.status.subscribe();
        loop {
            let status = *rx.borrow_and_update();
            if status.gone || status.deadline <= Instant::now() {
                return status.deadline;
            }
            // Either the deadline passes (the loop then returns it) or the status changes.
            let _ = tokio::time::timeout_at(status.deadline, rx.changed()).await;
        }
    }
}
