//! The RAII claim on a key's next fire, held in Redis.

use std::fmt;
use std::sync::Arc;

use super::error::RedisCooldownError;
use super::inner::RedisInner;
use crate::Fire;

/// The digest a reservation took out of Redis, in server µs, so a rollback
/// can put it back exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    pub(crate) count: i64,
    pub(crate) first: i64,
    pub(crate) last: i64,
}

impl Taken {
    pub(crate) const NONE: Taken = Taken {
        count: 0,
        first: 0,
        last: 0,
    };
}

/// The right to send the next event for one key on every replica, won by
/// [`RedisCooldown::reserve`](crate::RedisCooldown::reserve).
///
/// While it lives, the key's window key in Redis holds this reservation's
/// token (for at most the reservation timeout), so every other event for the
/// key, on any replica, is suppressed and counted. [`commit`](Self::commit)
/// after the send succeeded starts the window. Dropping it without commit
/// (the send failed, the future holding it was cancelled) rolls back on a
/// spawned task (on the current tokio runtime, else the one the cooldown was
/// built in): the key may fire
/// again and the digest this reservation took goes back into Redis, so no
/// suppressed event is lost. If that rollback cannot reach Redis either, the
/// key fires again once the reservation timeout has passed.
#[must_use = "dropping a reservation rolls it back; call `commit().await` once the send succeeded"]
pub struct RedisReservation<K> {
    inner: Arc<RedisInner>,
    key: K,
    member: String,
    token: String,
    fire: Fire,
    taken: Taken,
    armed: bool,
}

impl<K> RedisReservation<K> {
    pub(crate) fn new(
        inner: Arc<RedisInner>,
        key: K,
        member: String,
        token: String,
        fire: Fire,
        taken: Taken,
    ) -> Self {
        Self {
            inner,
            key,
            member,
            token,
            fire,
            taken,
            armed: true,
        }
    }

    /// What this send should report: the suppressed events since the key
    /// last fired, and when that was. `degraded` if Redis did not answer and
    /// the unreachable policy handed this reservation out.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use seawall_cooldown::RedisCooldown;
    /// let c: RedisCooldown<String> = RedisCooldown::builder("redis://127.0.0.1:1/") // unreachable
    ///     .command_timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// let r = c.reserve("db-down").await.unwrap(); // the default policy fires
    /// assert!(r.fire().degraded);
    /// # }
    /// ```
    pub fn fire(&self) -> &Fire {
        &self.fire
    }

    /// The key this reservation is for.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use seawall_cooldown::RedisCooldown;
    /// let c: RedisCooldown<String> = RedisCooldown::builder("redis://127.0.0.1:1/") // unreachable
    ///     .command_timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// let r = c.reserve("db-down").await.unwrap();
    /// assert_eq!(r.key(), "db-down");
    /// # }
    /// ```
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Marks the send as done: the key's window starts now (Redis server
    /// time), on every replica, and the digest in [`fire`](Self::fire) counts
    /// as reported.
    ///
    /// If the reservation had expired in Redis (the send outlasted the
    /// reservation timeout), the window still starts, unless another
    /// replica's reservation holds the key by then.
    ///
    /// # Errors
    ///
    /// [`RedisCooldownError`] when Redis did not serve the commit (also
    /// counted as degraded). The alert went out anyway;
    /// the key stays reserved until the reservation timeout, then may fire
    /// again.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the commit runs on a spawned task and completes even if
    /// this future is dropped.
    ///
    /// # Examples
    ///
    /// Needs a Redis server, so it is not run here (`no_run`):
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() {
    /// use seawall_cooldown::RedisCooldown;
    /// let c: RedisCooldown<String> = RedisCooldown::builder("redis://127.0.0.1:6379/")
    ///     .build()
    ///     .unwrap();
    /// if let Ok(reservation) = c.reserve(&"db-down".to_owned()).await {
    ///     // ... the send succeeded ...
    ///     reservation.commit().await.ok();
    /// }
    /// # }
    /// ```
    pub async fn commit(mut self) -> Result<(), RedisCooldownError> {
        self.armed = false;
        let (inner, member, token) = (
            Arc::clone(&self.inner),
            std::mem::take(&mut self.member),
            std::mem::take(&mut self.token),
        );
        let task = self.inner.spawn(async move {
            let result = inner.commit(&member, &token).await;
            if let Err(e) = &result {
                inner.degraded("commit", e);
            }
            result
        });
        join(&self.inner, task).await
    }

    /// Gives the reservation back without sending, the same as dropping it
    /// but awaited: when it returns `Ok`, the key may fire again and the
    /// digest this reservation took is back in Redis.
    ///
    /// # Errors
    ///
    /// [`RedisCooldownError`] when Redis did not serve the rollback (also
    /// counted as degraded, and logged at `warn` if a digest is lost): the digest this
    /// reservation took is lost, and the key fires again once the
    /// reservation timeout has passed.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the rollback runs on a spawned task and completes even
    /// if this future is dropped.
    ///
    /// # Examples
    ///
    /// Needs a Redis server, so it is not run here (`no_run`):
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() {
    /// use seawall_cooldown::RedisCooldown;
    /// let c: RedisCooldown<String> = RedisCooldown::builder("redis://127.0.0.1:6379/")
    ///     .build()
    ///     .unwrap();
    /// let key = "db-down".to_owned();
    /// let reservation = c.reserve(&key).await.unwrap();
    /// // ... the send failed ...
    /// reservation.rollback().await.ok();
    /// assert!(c.check(&key).await.is_fire());
    /// # }
    /// ```
    pub async fn rollback(mut self) -> Result<(), RedisCooldownError> {
        self.armed = false;
        let task = self.spawn_rollback();
        join(&self.inner, task).await
    }

    fn spawn_rollback(&mut self) -> tokio::task::JoinHandle<Result<(), RedisCooldownError>> {
        let (inner, member, token, taken) = (
            Arc::clone(&self.inner),
            std::mem::take(&mut self.member),
            std::mem::take(&mut self.token),
            self.taken,
        );
        self.inner.spawn(async move {
            let result = inner.rollback(&member, &token, taken).await;
            if let Err(e) = &result {
                inner.degraded("rollback", e);
                if taken.count > 0 {
                    tracing::warn!(
                        cooldown = %inner.name(),
                        lost_suppressed = taken.count,
                        "redis cooldown rollback failed: the digest it carried is lost"
                    );
                }
            }
            result
        })
    }
}

async fn join(
    inner: &RedisInner,
    task: tokio::task::JoinHandle<Result<(), RedisCooldownError>>,
) -> Result<(), RedisCooldownError> {
    match task.await {
        Ok(result) => result,
        Err(e) => Err(RedisCooldownError::Interrupted {
            addr: Arc::clone(inner.addr()),
            source: Arc::new(e),
        }),
    }
}

impl<K> Drop for RedisReservation<K> {
    fn drop(&mut self) {
        if self.armed {
            self.armed = false;
            drop(self.spawn_rollback());
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for RedisReservation<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReservation")
            .field("cooldown", &self.inner.name())
            .field("key", &self.key)
            .field("token", &self.token)
            .field("fire", &self.fire)
            .finish_non_exhaustive()
    }
}
