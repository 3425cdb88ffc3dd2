//! The auto-renew watchdog: extends a lease at TTL/3 while its guard lives.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use super::inner::{Inner, Renewal};
use super::lease::RedisLease;

/// Starts the watchdog of `lease`; it stops when the lease is released (its abort handle
/// is kept in the lease) or found gone.
pub(crate) fn spawn(inner: &Arc<Inner>, lease: &RedisLease) {
    let task = inner.runtime.spawn(watch(Arc::clone(inner), lease.clone()));
    lease.0.set_watchdog(task.abort_handle());
}

async fn watch(inner: Arc<Inner>, lease: RedisLease) {
    let st = &lease.0;
    let period = (st.ttl / 3).max(Duration::from_millis(1));
    let retry = (period / 4).max(Duration::from_millis(1));
    let mut next = st.acquired_at + period;
    loop {
        sleep_until(next).await;
        if st.is_released() || st.is_gone() {
            return;
        }
        // A renewal due at (or after) the deadline is not sent: `lost()` has resolved, and an
        // expired lease is never revived.
        let now = Instant::now();
        if now >= st.deadline() {
            st.mark_gone(now);
            deadline_passed(st);
            return;
        }
        match inner.renew(st, st.ttl).await {
            Renewal::Renewed { sent_at, .. } => next = sent_at + period,
            Renewal::Gone => {
                tracing::warn!(
                    lock = %st.events.name(),
                    key = %st.lease_key,
                    token = st.token.get(),
                    "keyed lock lease is no longer in redis (another holder, or redis lost it); the guard is lost"
                );
                return;
            }
            Renewal::Expired => {
                deadline_passed(st);
                return;
            }
            Renewal::Failed(_) => {
                let now = Instant::now();
                if now >= st.deadline() {
                    st.mark_gone(now);
                    deadline_passed(st);
                    return;
                }
                // At the latest at the deadline, where the loop stops without sending.
                next = (now + retry).min(st.deadline());
            }
        }
    }
}

fn deadline_passed(st: &super::lease::LeaseState) {
    tracing::warn!(
        lock = %st.events.name(),
        key = %st.lease_key,
        token = st.token.get(),
        "keyed lock lease could not be renewed before its deadline; the guard is lost"
    );
}
