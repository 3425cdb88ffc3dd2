//! The verdict on one call.

/// How a finished call counts for the breaker, as decided by a classifier (see
/// [`CircuitBreaker::call_with`](crate::CircuitBreaker::call_with)) or reported on a
/// [`Permit`](crate::Permit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The dependency worked. Resets the consecutive-failure count; counts toward closing a
    /// half-open breaker (unless the call was slow, see
    /// [`SlowCalls`](crate::SlowCalls)).
    Success,
    /// The dependency failed. Counts toward tripping; reopens a half-open breaker.
    Failure,
    /// Says nothing about the dependency's health (a bad request, a "not found"): counted in
    /// the metrics, never in the trip policy. An ignored probe frees its slot.
    Ignored,
}

impl Outcome {
    /// The default classification: `Ok` is a success, `Err` a failure.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::Outcome;
    /// assert_eq!(Outcome::of(&Ok::<_, ()>(1)), Outcome::Success);
    /// assert_eq!(Outcome::of(&Err::<(), _>("down")), Outcome::Failure);
    /// ```
    pub fn of<T, E>(result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }

    /// Classifies by the error only: `Ok` is a success, an error is what `classify` says.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::Outcome;
    /// let not_found_is_fine = |e: &u16| if *e == 404 { Outcome::Ignored } else { Outcome::Failure };
    /// assert_eq!(Outcome::of_error(&Err::<(), _>(404), not_found_is_fine), Outcome::Ignored);
    /// assert_eq!(Outcome::of_error(&Err::<(), _>(503), not_found_is_fine), Outcome::Failure);
    /// ```
    pub fn of_error<T, E>(result: &Result<T, E>, classify: impl FnOnce(&E) -> Outcome) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) => classify(e),
        }
    }
}

/// A verdict on a permit, including the one it gets when it is dropped without one. Lives
/// here, beside [`Outcome`], so that the state machine and the metrics both depend on this
/// leaf module and not on each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Outcome(Outcome),
    Abandoned,
}
