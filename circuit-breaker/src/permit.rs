//! Permits: the right to make one call, and the duty to report how it went.

use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::Arc;

use crate::inner::Inner;
use crate::outcome::Verdict;
use crate::word::Token;
use crate::{Outcome, State};

/// The right to make one call through a [`CircuitBreaker`](crate::CircuitBreaker), from
/// [`try_acquire`](crate::CircuitBreaker::try_acquire).
///
/// Report how the call went with [`success`](Permit::success),
/// [`failure`](Permit::failure), [`ignore`](Permit::ignore) or [`record`](Permit::record).
/// A permit dropped without a verdict (the task was cancelled, the code panicked) counts as
/// *abandoned*: it says nothing about the dependency, and if it was a half-open probe its slot
/// is freed at once, so the next call can probe. A probe that is kept but never reported
/// counts as failed once it outlives the
/// [maximum probe duration](crate::CircuitBreakerBuilder::max_probe_duration). A breaker can
/// therefore never stay half-open with every slot held, whether by a probe that no longer
/// exists or by one that hangs.
///
/// A permit is `'static` (it holds a reference-counted handle to the breaker), so it can move
/// into a spawned task. Taking one clones that handle: a write to a count shared by every
/// thread using the breaker. Where the permit does not need to outlive the borrow of the
/// breaker, [`try_acquire_ref`](crate::CircuitBreaker::try_acquire_ref) gives a [`PermitRef`],
/// which writes nothing shared on the closed path.
///
/// # Examples
///
/// ```
/// use seawall_circuit_breaker::CircuitBreaker;
///
/// fn write_sync(breaker: &CircuitBreaker, ok: bool) -> Result<(), &'static str> {
///     let permit = breaker.try_acquire().map_err(|_| "breaker open")?;
///     if ok {
///         permit.success();
///         Ok(())
///     } else {
///         permit.failure();
///         Err("write failed")
///     }
/// }
///
/// let breaker = CircuitBreaker::builder().consecutive_failures(2).build().unwrap();
/// assert_eq!(write_sync(&breaker, false), Err("write failed"));
/// assert_eq!(write_sync(&breaker, false), Err("write failed"));
/// assert_eq!(write_sync(&breaker, true), Err("breaker open"));
/// ```
#[must_use = "a permit dropped without a verdict counts as abandoned"]
pub struct Permit {
    inner: Arc<Inner>,
    token: Token,
}

impl Permit {
    #[inline]
    pub(crate) fn new(inner: Arc<Inner>, token: Token) -> Permit {
        Permit { inner, token }
    }

    /// Reports that the call succeeded.
    #[inline]
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// Reports that the call failed.
    #[inline]
    pub fn failure(self) {
        self.record(Outcome::Failure);
    }

    /// Reports that the call's outcome says nothing about the dependency's health. A
    /// half-open probe's slot is freed.
    #[inline]
    pub fn ignore(self) {
        self.record(Outcome::Ignored);
    }

    /// Reports `outcome`.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, Outcome, State};
    ///
    /// let breaker = CircuitBreaker::builder().consecutive_failures(1).build().unwrap();
    /// let result: Result<(), u16> = Err(404);
    /// breaker.try_acquire().unwrap().record(Outcome::of_error(&result, |_| Outcome::Ignored));
    /// assert_eq!(breaker.state(), State::Closed);
    /// ```
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        let token = std::mem::replace(&mut self.token, Token::SPENT);
        self.inner.finish(token, Verdict::Outcome(outcome));
    }

    /// `true` if this permit is a half-open probe: its verdict decides whether the breaker
    /// closes or reopens (if it comes within the
    /// [maximum probe duration](crate::CircuitBreakerBuilder::max_probe_duration)).
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::builder().build().unwrap();
    /// assert!(!breaker.try_acquire().unwrap().is_probe());
    /// ```
    #[inline]
    pub fn is_probe(&self) -> bool {
        self.token.state() == State::HalfOpen
    }

    /// The state the permit was granted in: `Closed`, `HalfOpen` or `Disabled`.
    #[inline]
    pub fn state(&self) -> State {
        self.token.state()
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        if !self.token.is_spent() {
            self.inner.finish(self.token, Verdict::Abandoned);
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.inner.name)
            .field("state", &self.state())
            .finish()
    }
}

/// The right to make one call through a [`CircuitBreaker`](crate::CircuitBreaker), borrowed
/// from it: from [`try_acquire_ref`](crate::CircuitBreaker::try_acquire_ref), and what
/// [`call`](crate::CircuitBreaker::call) holds while its future runs.
///
/// The same contract as [`Permit`] (report with [`success`](PermitRef::success),
/// [`failure`](PermitRef::failure), [`ignore`](PermitRef::ignore) or
/// [`record`](PermitRef::record); dropped without a verdict it counts as abandoned and a
/// half-open probe's slot is freed at once; a probe kept past the maximum probe duration
/// counts as failed), without [`Permit`]'s reference count: taking and reporting a closed
/// permit writes nothing shared, so threads sharing one breaker do not contend. Use
/// [`Permit`] when the permit must outlive the borrow (move into a spawned task).
///
/// # Examples
///
/// ```
/// use seawall_circuit_breaker::CircuitBreaker;
///
/// fn write_sync(breaker: &CircuitBreaker, ok: bool) -> Result<(), &'static str> {
///     let permit = breaker.try_acquire_ref().map_err(|_| "breaker open")?;
///     if ok {
///         permit.success();
///         Ok(())
///     } else {
///         permit.failure();
///         Err("write failed")
///     }
/// }
///
/// let breaker = CircuitBreaker::builder().consecutive_failures(1).build().unwrap();
/// assert_eq!(write_sync(&breaker, true), Ok(()));
/// assert_eq!(write_sync(&breaker, false), Err("write failed"));
/// assert_eq!(write_sync(&breaker, true), Err("breaker open"));
/// ```
#[must_use = "a permit dropped without a verdict counts as abandoned"]
pub struct PermitRef<'a> {
    inner: &'a Inner,
    token: Token,
}

impl<'a> PermitRef<'a> {
    #[inline]
    pub(crate) fn new(inner: &'a Inner, token: Token) -> PermitRef<'a> {
        PermitRef { inner, token }
    }

    /// Reports that the call succeeded.
    #[inline]
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// Reports that the call failed.
    #[inline]
    pub fn failure(self) {
        self.record(Outcome::Failure);
    }

    /// Reports that the call's outcome says nothing about the dependency's health. A
    /// half-open probe's slot is freed.
    #[inline]
    pub fn ignore(self) {
        self.record(Outcome::Ignored);
    }

    /// Reports `outcome`.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, Outcome, State};
    ///
    /// let breaker = CircuitBreaker::builder().consecutive_failures(1).build().unwrap();
    /// breaker.try_acquire_ref().unwrap().record(Outcome::Failure);
    /// assert_eq!(breaker.state(), State::Open);
    /// ```
    #[inline]
    pub fn record(self, outcome: Outcome) {
        // The verdict replaces the drop: nothing to mark spent, nothing left to release.
        let this = ManuallyDrop::new(self);
        this.inner.finish(this.token, Verdict::Outcome(outcome));
    }

    /// `true` if this permit is a half-open probe (see [`Permit::is_probe`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::builder().build().unwrap();
    /// assert!(!breaker.try_acquire_ref().unwrap().is_probe());
    /// ```
    #[inline]
    pub fn is_probe(&self) -> bool {
        self.token.state() == State::HalfOpen
    }

    /// The state the permit was granted in: `Closed`, `HalfOpen` or `Disabled`.
    #[inline]
    pub fn state(&self) -> State {
        self.token.state()
    }
}

impl Drop for PermitRef<'_> {
    #[inline]
    fn drop(&mut self) {
        self.inner.finish(self.token, Verdict::Abandoned);
    }
}

impl fmt::Debug for PermitRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PermitRef")
            .field("breaker", &self.inner.name)
            .field("state", &self.state())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{CircuitBreaker, State};

    #[tokio::test(start_paused = true)]
    async fn a_borrowed_permit_keeps_the_permit_contract() {
        let b = CircuitBreaker::builder()
            .consecutive_failures(2)
            .open_duration(Duration::from_secs(1))
            .max_probe_duration(Duration::from_secs(5))
            .build()
            .unwrap();
        // Consecutive failures: a success in between resets the count; an abandoned or
        // ignored permit does not.
        b.try_acquire_ref().unwrap().failure();
        b.try_acquire_ref().unwrap().success();
        b.try_acquire_ref().unwrap().failure();
        drop(b.try_acquire_ref().unwrap());
        b.try_acquire_ref().unwrap().ignore();
        assert_eq!(b.state(), State::Closed);
        b.try_acquire_ref().unwrap().failure();
        assert_eq!(b.try_acquire_ref().unwrap_err().state, State::Open);

        // A dropped probe frees its slot at once.
        tokio::time::advance(Duration::from_secs(1)).await;
        let probe = b.try_acquire_ref().unwrap();
        assert!(probe.is_probe());
        assert_eq!(b.try_acquire_ref().unwrap_err().state, State::HalfOpen);
        drop(probe);
        // A kept probe that outlives the maximum probe duration counts as failed.
        let hung = b.try_acquire_ref().unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.state(), State::Open);
        hung.success(); // too late: ignored
        assert_eq!(b.state(), State::Open);
        tokio::time::advance(Duration::from_secs(1)).await;
        b.try_acquire_ref().unwrap().success();
        assert_eq!(b.state(), State::Closed);
    }
}
