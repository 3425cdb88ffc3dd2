//! Ending leases in the background: a dropped guard's release, and the cleanup of a lease an
//! abandoned acquisition may have been granted. Both are spawned (`Drop` must not wait) on
//! the runtime the backend was built in.

use std::sync::Arc;

use tokio::time::Instant;

use super::inner::Inner;
use super::lease::RedisLease;
use crate::LockBackend;

impl Inner {
    /// Spawns the release of `lease` (from `Drop`: must not wait).
    pub(crate) fn spawn_release(self: &Arc<Self>, lease: RedisLease) {
        let expired = Instant::now() >= lease.0.deadline();
        let task = ReleaseTask {
            inner: Arc::clone(self),
            lease,
            expired,
            reported: false,
        };
        // If the runtime is gone the task is dropped unrun: its Drop frees the local queue and
        // the Redis lease ends by its TTL.
        drop(self.runtime.spawn(task.run()));
    }

    /// Deletes a lease that an abandoned acquisition (cancelled, timed out or failed while
    /// its script was in flight) may have been granted: the one whose value ends in `owner`.
    pub(crate) fn spawn_abandon(self: &Arc<Self>, lease_key: String, owner: String) {
        let inner = Arc::clone(self);
        drop(self.runtime.spawn(async move {
            let mut inv = inner.scripts.abandon.prepare_invoke();
            inv.key(&lease_key).arg(format!(":{owner}"));
            if let Err(e) = inner.invoke::<i64>(&inv).await {
                tracing::debug!(%e, key = %lease_key, "keyed lock: could not clean up an abandoned acquisition; it ends by its TTL");
            }
        }));
    }
}

/// Releases the lease in Redis, then the in-process queue (so the next local waiter finds
/// the Redis key free). Reports the end of the lease exactly once, even if never run.
struct ReleaseTask {
    inner: Arc<Inner>,
    lease: RedisLease,
    expired: bool,
    reported: bool,
}

impl ReleaseTask {
    async fn run(mut self) {
        let st = &self.lease.0;
        let mut inv = self.inner.scripts.release.prepare_invoke();
        inv.key(&st.lease_key).arg(&st.value);
        match self.inner.invoke::<i64>(&inv).await {
            Ok(1) => st.events.released(self.expired),
            Ok(_) => st.events.taken_over(
                st.token,
                Instant::now().saturating_duration_since(st.acquired_at),
            ),
            Err(e) => {
                st.events.backend_error(&e);
                st.events.released(self.expired);
                // The waiters queued behind this guard fail with this error rather than each
                // trying (and waiting) in turn.
                self.inner.failures.record(&st.lease_key, &e);
            }
        }
        self.reported = true;
    }
}

impl Drop for ReleaseTask {
    fn drop(&mut self) {
        let st = &self.lease.0;
        if !self.reported {
            st.events.released(self.expired);
        }
        self.inner
            .local
            .release(&st.local, st.local_token, &self.inner.local_events);
    }
}
