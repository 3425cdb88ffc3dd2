//! The circuit breaker handle.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::inner::Inner;
use crate::{Error, Outcome, Permit, PermitRef, Reason, Rejected, State, Transition};

/// A circuit breaker: stops calling a dependency that keeps failing, lets a few probe calls
/// through once its open duration has elapsed, and closes again when they succeed.
///
/// Cheap to clone: clones share one breaker. `Send + Sync + 'static`.
///
/// ```text
///            trip policy                open duration elapsed
///   Closed ───────────────▶ Open ───────────────────────────▶ HalfOpen
///     ▲                      ▲                                  │  │
///     │                      └────────── a probe failed ────────┘  │
///     └──────────────── successes_to_close probes succeeded ───────┘
///
///   force_open() ▶ ForcedOpen    disable() ▶ Disabled    reset() ▶ Closed (from any state)
/// ```
///
/// Time-driven moves (`Open` to `HalfOpen` once the open duration has passed, `HalfOpen` to
/// `Open` once a probe outlives the maximum probe duration) are made by the first
/// [`call`](CircuitBreaker::call), [`try_acquire`](CircuitBreaker::try_acquire),
/// [`state`](CircuitBreaker::state) or metrics scrape that sees them due, and dated to when
/// they became due: no timer task runs, and no reader ever sees a stale state.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seawall_circuit_breaker::{CircuitBreaker, Error, State};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let breaker = CircuitBreaker::builder()
///     .name("audit")
///     .consecutive_failures(2)
///     .open_duration(Duration::from_secs(30))
///     .build()
///     .unwrap();
///
/// for _ in 0..2 {
///     let r: Result<(), Error<&str>> = breaker.call(|| async { Err("db down") }).await;
///     assert_eq!(r, Err(Error::Inner("db down")));
/// }
/// assert_eq!(breaker.state(), State::Open);
/// let r = breaker.call(|| async { Ok::<_, &str>(()) }).await;
/// assert_eq!(r, Err(Error::Open { retry_after: Duration::from_secs(30) }));
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("state", &self.state())
            .finish()
    }
}

impl CircuitBreaker {
    /// The breaker's name (default `"default"`).
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::CircuitBreaker;
    ///
    /// assert_eq!(CircuitBreaker::builder().build().unwrap().name(), "default");
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Runs `f` if the breaker permits, and records its outcome: `Ok` is a success, `Err` a
    /// failure. See [`call_with`](CircuitBreaker::call_with) to classify results yourself.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] without calling `f` when the breaker rejects the call;
    /// [`Error::Inner`] with `f`'s own error when it fails.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes drops `f`'s future and counts the call as
    /// abandoned: it neither succeeds nor fails, and a half-open probe slot is freed.
    ///
    /// # Panics
    ///
    /// Never by itself. If `f` panics the call counts as abandoned and the panic propagates.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = CircuitBreaker::builder().name("users-db").build().unwrap();
    /// let n: Result<u32, Error<std::io::Error>> = breaker.call(|| async { Ok(42) }).await;
    /// assert_eq!(n.unwrap(), 42);
    /// # }
    /// ```
    pub async fn call<F, Fut, T, E>(&self, f: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let token = self.inner.acquire()?;
        let guard = PermitRef::new(&self.inner, token);
        let result = f().await;
        guard.record(Outcome::of(&result));
        result.map_err(Error::Inner)
    }

    /// Like [`call`](CircuitBreaker::call), with `classify` deciding how the result counts:
    /// a predicate over the error and, if needed, the `Ok` value.
    ///
    /// # Errors
    ///
    /// As [`call`](CircuitBreaker::call). An `Err` classified as a success or ignored is still
    /// returned as [`Error::Inner`]: classification only decides what the breaker counts.
    ///
    /// # Cancel safety
    ///
    /// As [`call`](CircuitBreaker::call): a dropped future counts as abandoned.
    ///
    /// # Panics
    ///
    /// Never by itself; a panic in `f` or `classify` counts the call as abandoned.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, Error, Outcome, State};
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum DbError { NotFound, Down }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = CircuitBreaker::builder().consecutive_failures(1).build().unwrap();
    /// let not_found_is_healthy = |r: &Result<(), DbError>| {
    ///     Outcome::of_error(r, |e| match e {
    ///         DbError::NotFound => Outcome::Ignored,
    ///         DbError::Down => Outcome::Failure,
    ///     })
    /// };
    /// let r = breaker.call_with(not_found_is_healthy, || async { Err(DbError::NotFound) }).await;
    /// assert_eq!(r, Err(Error::Inner(DbError::NotFound)));
    /// assert_eq!(breaker.state(), State::Closed);
    /// # }
    /// ```
    pub async fn call_with<C, F, Fut, T, E>(&self, classify: C, f: F) -> Result<T, Error<E>>
    where
        C: FnOnce(&Result<T, E>) -> Outcome,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let token = self.inner.acquire()?;
        let guard = PermitRef::new(&self.inner, token);
        let result = f().await;
        guard.record(classify(&result));
        result.map_err(Error::Inner)
    }

    /// Asks for a permit to make one call, for code that cannot hand the breaker a future
    /// (synchronous code, or a call spread over several steps). Report the outcome on the
    /// [`Permit`]; dropping it without a verdict counts as abandoned.
    ///
    /// # Errors
    ///
    /// [`Rejected`] when the breaker is open, forced open, or half-open with every probe slot
    /// taken; it carries `retry_after`.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, State};
    ///
    /// let breaker = CircuitBreaker::builder().build().unwrap();
    /// let permit = breaker.try_acquire().unwrap();
    /// assert_eq!(permit.state(), State::Closed);
    /// permit.success();
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit, Rejected> {
        let token = self.inner.acquire()?;
        Ok(Permit::new(Arc::clone(&self.inner), token))
    }

    /// Like [`try_acquire`](CircuitBreaker::try_acquire), with a permit that borrows the
    /// breaker instead of holding a reference-counted handle: on the closed path neither
    /// taking nor reporting it writes anything shared, so threads sharing the breaker do
    /// not contend. For a permit that must be `'static`, use `try_acquire`.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](CircuitBreaker::try_acquire).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, State};
    ///
    /// let breaker = CircuitBreaker::builder().build().unwrap();
    /// let permit = breaker.try_acquire_ref().unwrap();
    /// assert_eq!(permit.state(), State::Closed);
    /// permit.success();
    /// ```
    #[inline]
    pub fn try_acquire_ref(&self) -> Result<PermitRef<'_>, Rejected> {
        let token = self.inner.acquire()?;
        Ok(PermitRef::new(&self.inner, token))
    }

    /// The state the next call would see. Time-driven transitions are made (and emitted as
    /// tracing events and [`Transition`]s) here when they are due, without waiting for a
    /// call: an open breaker whose open duration has passed becomes and reports `HalfOpen`;
    /// a half-open breaker whose probe outlived the
    /// [maximum probe duration](crate::CircuitBreakerBuilder::max_probe_duration) becomes and
    /// reports `Open`. Those are the only times this method takes a lock; a closed breaker
    /// costs one atomic load.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seawall_circuit_breaker::{CircuitBreaker, State};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let breaker = CircuitBreaker::builder().consecutive_failures(1).build().unwrap();
    /// breaker.try_acquire().unwrap().failure();
    /// assert_eq!(breaker.state(), State::Open);
    /// tokio::time::advance(Duration::from_secs(30)).await;
    /// // No call needed: the state follows the clock.
    /// assert_eq!(breaker.state(), State::HalfOpen);
    /// # }
    /// ```
    #[inline]
    pub fn state(&self) -> State {
        self.inner.state()
    }

    /// Opens the breaker until [`reset`](CircuitBreaker::reset), whatever the calls do:
    /// for maintenance windows, or when an operator knows the dependency is down.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, State};
    ///
    /// let breaker = CircuitBreaker::builder().build().unwrap();
    /// breaker.force_open();
    /// assert_eq!(breaker.try_acquire().unwrap_err().state, State::ForcedOpen);
    /// ```
    pub fn force_open(&self) {
        self.inner.manual(State::ForcedOpen, Reason::ForcedOpen);
    }

    /// Lets every call through until [`reset`](CircuitBreaker::reset); outcomes are still
    /// counted in the metrics but never trip the breaker.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, State};
    ///
    /// let breaker = CircuitBreaker::builder().consecutive_failures(1).build().unwrap();
    /// breaker.disable();
    /// breaker.try_acquire().unwrap().failure();
    /// assert_eq!(breaker.state(), State::Disabled);
    /// ```
    pub fn disable(&self) {
        self.inner.manual(State::Disabled, Reason::Disabled);
    }

    /// Returns to `Closed` from any state and forgets everything counted: failures, windows,
    /// the open-duration sequence. Permits granted before the reset no longer count.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, State};
    ///
    /// let breaker = CircuitBreaker::builder().consecutive_failures(1).build().unwrap();
    /// breaker.try_acquire().unwrap().failure();
    /// breaker.reset();
    /// assert_eq!(breaker.state(), State::Closed);
    /// ```
    pub fn reset(&self) {
        self.inner.manual(State::Closed, Reason::Reset);
    }

    /// A receiver of every later [`Transition`], in order. The channel holds 64
    /// transitions; a receiver that falls further behind gets
    /// [`RecvError::Lagged`](broadcast::error::RecvError::Lagged) and continues with the
    /// newest.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, State};
    ///
    /// let breaker = CircuitBreaker::builder().build().unwrap();
    /// let mut transitions = breaker.subscribe();
    /// breaker.force_open();
    /// let t = transitions.try_recv().unwrap();
    /// assert_eq!((t.from, t.to), (State::Closed, State::ForcedOpen));
    /// ```
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.inner.subscribe()
    }
}
