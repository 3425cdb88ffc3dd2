//! A retry budget shared by many policies, so a fleet cannot turn an outage into a retry storm.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::nanos;
use crate::builder::RetryBudgetBuilder;

/// Fixed-point scale: one token is this many units.
const UNIT: u64 = 1_000_000;

/// A token bucket limiting retries to a ratio of calls, plus a small floor per second
/// (Finagle's `RetryBudget`, gRPC's retry throttling).
///
/// Every call (its first attempt) **deposits** `ratio` tokens, up to `max_tokens`; every retry
/// **withdraws** one token. When the bucket holds less than one token, a retry may still be
/// taken from a **floor** of `min_per_second` retries per second (a GCRA rate limiter with a
/// burst of one second's worth), so a service with little traffic can still retry at all.
/// Otherwise the retry is refused and the call ends with
/// [`RetryError::Budget`](crate::RetryError::Budget).
///
/// Over any interval of `t` seconds, the retries it allows are bounded by
///
/// ```text
/// retries ≤ max_tokens + ratio × calls + min_per_second × (t + 1)
/// ```
///
/// so in a long outage the retry load converges to `ratio` of the call load (20 % by default)
/// instead of multiplying it by `max_attempts`. The bucket starts empty: a fresh process gets
/// only the floor until calls have deposited.
///
/// `RetryBudget` is a cheap handle (`Arc`); clone it into every policy that calls the same
/// dependency. It is lock-free: a deposit is one atomic compare-and-swap (only a load once the
/// bucket is full), a withdrawal one or two, and the clock is read only when the bucket is
/// empty.
///
/// # Default
/// | setting | default |
/// |---|---|
/// | `ratio` | 0.2 (Finagle's `percentCanRetry`) |
/// | `min_per_second` | 10 (Finagle's `minRetriesPerSec`) |
/// | `max_tokens` | 100 |
///
/// # Examples
/// ```
/// use seawall_retry::RetryBudget;
///
/// let budget = RetryBudget::builder().ratio(0.5).min_per_second(0).build()?;
/// assert!(!budget.try_withdraw()); // empty at start, and no floor
/// budget.deposit();
/// budget.deposit();
/// assert_eq!(budget.tokens(), 1.0);
/// assert!(budget.try_withdraw());
/// assert!(!budget.try_withdraw());
/// # Ok::<(), seawall_retry::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    balance: AtomicU64,
    deposit: u64,
    cap: u64,
    /// Floor: nanoseconds between two floor retries (0 = no floor).
    interval: u64,
    /// Floor: how far the theoretical arrival time may run ahead of now (one second's burst).
    tolerance: u64,
    /// Floor: theoretical arrival time, nanoseconds since `epoch`.
    tat: AtomicU64,
    epoch: Instant,
    ratio: f64,
    min_per_second: u32,
    max_tokens: u32,
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &self.inner.ratio)
            .field("min_per_second", &self.inner.min_per_second)
            .field("max_tokens", &self.inner.max_tokens)
            .field("tokens", &self.tokens())
            .finish()
    }
}

impl Default for RetryBudget {
    /// The budget with the defaults listed on [`RetryBudgetBuilder`].
    fn default() -> Self {
        let d = RetryBudgetBuilder::new();
        RetryBudget::from_valid(d.ratio, d.min_per_second, d.max_tokens)
    }
}

impl RetryBudget {
    /// A builder with the defaults (see [`RetryBudget`]).
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder::default()
    }

    /// Records a call (a first attempt): adds `ratio` tokens, up to `max_tokens`. The retry
    /// policy calls this itself; call it by hand only when using the budget without a policy.
    ///
    /// # Panics
    /// Never.
    pub fn deposit(&self) {
        self.deposit_and_get();
    }

    pub(crate) fn deposit_and_get(&self) -> u64 {
        let inner = &*self.inner;
        let mut cur = inner.balance.load(Ordering::Relaxed);
        loop {
            let new = cur.saturating_add(inner.deposit).min(inner.cap);
            if new == cur {
                return cur;
            }
            match inner.balance.compare_exchange_weak(
                cur,
                new,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return new,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Asks for one retry: takes a token from the bucket, or failing that from the per-second
    /// floor. `false` means the retry must not be made.
    ///
    /// # Panics
    /// Never.
    pub fn try_withdraw(&self) -> bool {
        let inner = &*self.inner;
        let mut cur = inner.balance.load(Ordering::Relaxed);
        while cur >= UNIT {
            match inner.balance.compare_exchange_weak(
                cur,
                cur - UNIT,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
        self.try_floor()
    }

    fn try_floor(&self) -> bool {
        let inner = &*self.inner;
        if inner.interval == 0 {
            return false;
        }
        let now = nanos(Instant::now().saturating_duration_since(inner.epoch));
        let mut tat = inner.tat.load(Ordering::Relaxed);
        loop {
            let new_tat = tat.max(now).saturating_add(inner.interval);
            if new_tat - now > inner.tolerance {
                return false;
            }
            match inner.tat.compare_exchange_weak(
                tat,
                new_tat,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => tat = actual,
            }
        }
    }

    /// Tokens currently in the bucket (the floor not included).
    pub fn tokens(&self) -> f64 {
        self.inner.balance.load(Ordering::Relaxed) as f64 / UNIT as f64
    }

    pub(crate) fn units_to_tokens(units: u64) -> f64 {
        units as f64 / UNIT as f64
    }
}

impl RetryBudget {
    /// A budget from validated settings (see [`RetryBudgetBuilder::build`]).
    pub(crate) fn from_valid(ratio: f64, min_per_second: u32, max_tokens: u32) -> Self {
        let interval = match min_per_second {
            0 => 0,
            n => nanos(Duration::from_secs(1)) / u64::from(n),
        };
        RetryBudget {
            inner: Arc::new(Inner {
                balance: AtomicU64::new(0),
                deposit: (ratio * UNIT as f64).round() as u64,
                cap: u64::from(max_tokens).saturating_mul(UNIT),
                interval,
                tolerance: interval.saturating_mul(u64::from(min_per_second)),
                tat: AtomicU64::new(0),
                epoch: Instant::now(),
                ratio,
                min_per_second,
                max_tokens,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposits_are_capped() {
        let b = RetryBudget::builder()
            .ratio(1.0)
            .max_tokens(3)
            .min_per_second(0)
            .build()
            .unwrap();
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(b.tokens(), 3.0);
        assert!(b.try_withdraw());
        assert!(b.try_withdraw());
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
        assert_eq!(b.tokens(), 0.0);
    }

    #[test]
    fn ratio_one_in_five() {
        let b = RetryBudget::builder().min_per_second(0).build().unwrap();
        let mut allowed = 0;
        for _ in 0..100 {
            b.deposit();
            if b.try_withdraw() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn floor_allows_a_burst_then_a_steady_rate() {
        let b = RetryBudget::builder()
            .ratio(0.0)
            .min_per_second(10)
            .build()
            .unwrap();
        let burst = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(burst, 10);
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
        tokio::time::advance(Duration::from_secs(5)).await;
        let burst = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(burst, 10);
    }

    #[test]
    fn config_errors_name_the_field() {
        for r in [f64::NAN, -0.1, 1001.0, f64::INFINITY] {
            assert_eq!(
                RetryBudget::builder().ratio(r).build().unwrap_err().field(),
                "ratio"
            );
        }
        assert_eq!(
            RetryBudget::builder()
                .max_tokens(0)
                .build()
                .unwrap_err()
                .field(),
            "max_tokens"
        );
        // u32::MAX per second would make the floor's interval 0 ns, which means "no floor".
        let e = RetryBudget::builder()
            .min_per_second(u32::MAX)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "min_per_second");
        assert_eq!(e.reason(), "must be in 0..=1000000, got 4294967295");
        assert!(
            RetryBudget::builder()
                .min_per_second(1_000_000)
                .build()
                .is_ok()
        );
    }
}
