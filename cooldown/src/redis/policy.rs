//! What a Redis cooldown decides when Redis does not answer.

/// The decision a [`RedisCooldown`](crate::RedisCooldown) takes when Redis is
/// unreachable, times out or fails the script.
///
/// Either way the decision is marked (`Fire::degraded` or
/// `Suppressed::degraded`), counted in `seawall_cooldown_degraded_total` and
/// logged at `debug` (the outage itself at `warn` when it begins, at `info`
/// when it ends). [`check_critical`](crate::RedisCooldown::check_critical)
/// fires under both policies. Callers that want the error itself use
/// [`try_check`](crate::RedisCooldown::try_check).
///
/// A decision whose reply is lost (the script ran in Redis, then the
/// connection broke or the answer came late) is first sent once more with
/// the same call id within the timeout, and Redis answers it with the same
/// decision, so a fire that ran is reported with its digest. The policy only
/// decides when that retry fails too; if the first attempt had run a fire,
/// the digest it took is then lost, and under `Suppress` the key's window
/// has started in Redis although no replica fired, so that event is not sent
/// (see [the crate docs](crate#redis-backend)).
///
/// # Default
///
/// [`UnreachablePolicy::Fire`]: the cooldown's store being down must not
/// lose the alert that may be about it. While Redis is down every replica
/// fires every event, so the alert channel may see duplicates; that is the
/// price of not losing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnreachablePolicy {
    /// Fire the event (`Fire { degraded: true, .. }`, with no digest and no
    /// `last_fired`, since neither is known). A reservation taken this way
    /// still tries to start the window on commit.
    #[default]
    Fire,
    /// Suppress the event (`Suppressed { degraded: true, remaining: 0,
    /// suppressed: 0 }`); it is counted nowhere, so it is lost. For
    /// notifications where a flood is worse than a gap.
    Suppress,
}
