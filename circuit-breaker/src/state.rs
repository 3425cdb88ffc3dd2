//! The breaker's states and the transitions between them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// The state of a [`CircuitBreaker`](crate::CircuitBreaker).
///
/// `Closed`, `Open` and `HalfOpen` are driven by the calls' outcomes and the clock; `ForcedOpen`
/// and `Disabled` are set by an operator ([`force_open`](crate::CircuitBreaker::force_open),
/// [`disable`](crate::CircuitBreaker::disable)) and left only by another manual call
/// ([`reset`](crate::CircuitBreaker::reset) returns to `Closed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls pass through; their outcomes feed the trip policy.
    Closed,
    /// Calls are rejected until the open duration has elapsed.
    Open,
    /// A limited number of probe calls pass through; their outcomes decide between `Closed`
    /// and `Open`.
    HalfOpen,
    /// Set by [`force_open`](crate::CircuitBreaker::force_open): every call is rejected until
    /// [`reset`](crate::CircuitBreaker::reset).
    ForcedOpen,
    /// Set by [`disable`](crate::CircuitBreaker::disable): every call is permitted and its
    /// outcome is still counted in the metrics, but nothing trips the breaker.
    Disabled,
}

impl State {
    /// Every state, in declaration order.
    pub const ALL: [State; 5] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::Disabled,
    ];

    /// The state's name in `snake_case`, as used in metric labels and tracing fields.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::State;
    /// assert_eq!(State::HalfOpen.as_str(), "half_open");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
        }
    }

    pub(crate) const fn code(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
            State::Disabled => 4,
        }
    }

    pub(crate) const fn from_code(code: u64) -> State {
        match code {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            _ => State::Disabled,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transition happened.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Reason {
    /// `count` failures in a row reached the consecutive-failure threshold.
    ConsecutiveFailures {
        /// Failures in a row when the breaker tripped.
        count: u32,
    },
    /// The failure rate over the window reached the threshold.
    FailureRate {
        /// The measured rate, in `[0, 1]`.
        rate: f64,
        /// Calls in the window the rate was measured over.
        calls: u32,
    },
    /// The slow-call rate over the window reached the threshold.
    SlowCallRate {
        /// The measured rate, in `[0, 1]`.
        rate: f64,
        /// Calls in the window the rate was measured over.
        calls: u32,
    },
    /// The open duration elapsed; probes may pass.
    OpenElapsed {
        /// How long the breaker was open.
        open_for: Duration,
    },
    /// Enough probes succeeded.
    ProbesSucceeded {
        /// Successful probes, equal to the configured `successes_to_close`.
        successes: u32,
    },
    /// A probe failed (or was slower than the slow-call threshold).
    ProbeFailed,
    /// A probe did not report within the maximum probe duration
    /// ([`max_probe_duration`](crate::CircuitBreakerBuilder::max_probe_duration)): it counts
    /// as failed and its slot is freed.
    ProbeTimedOut {
        /// The maximum probe duration it outlived.
        after: Duration,
    },
    /// [`force_open`](crate::CircuitBreaker::force_open) was called.
    ForcedOpen,
    /// [`disable`](crate::CircuitBreaker::disable) was called.
    Disabled,
    /// [`reset`](crate::CircuitBreaker::reset) was called.
    Reset,
}

impl Reason {
    /// A short `snake_case` name for the reason, used in tracing fields.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::Reason;
    /// assert_eq!(Reason::ProbeFailed.as_str(), "probe_failed");
    /// ```
    pub const fn as_str(&self) -> &'static str {
        match self {
            Reason::ConsecutiveFailures { .. } => "consecutive_failures",
            Reason::FailureRate { .. } => "failure_rate",
            Reason::SlowCallRate { .. } => "slow_call_rate",
            Reason::OpenElapsed { .. } => "open_elapsed",
            Reason::ProbesSucceeded { .. } => "probes_succeeded",
            Reason::ProbeFailed => "probe_failed",
            Reason::ProbeTimedOut { .. } => "probe_timed_out",
            Reason::ForcedOpen => "forced_open",
            Reason::Disabled => "disabled",
            Reason::Reset => "reset",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ConsecutiveFailures { count } => write!(f, "{count} consecutive failures"),
            Reason::FailureRate { rate, calls } => {
                write!(f, "failure rate {:.1}% over {calls} calls", rate * 100.0)
            }
            Reason::SlowCallRate { rate, calls } => {
                write!(f, "slow-call rate {:.1}% over {calls} calls", rate * 100.0)
            }
            Reason::OpenElapsed { open_for } => {
                write!(f, "open for {} ms, probing", open_for.as_millis())
            }
            Reason::ProbesSucceeded { successes } => write!(f, "{successes} probes succeeded"),
            Reason::ProbeFailed => f.write_str("a probe failed"),
            Reason::ProbeTimedOut { after } => {
                write!(f, "a probe did not report within {} ms", after.as_millis())
            }
            Reason::ForcedOpen => f.write_str("forced open"),
            Reason::Disabled => f.write_str("disabled"),
            Reason::Reset => f.write_str("reset"),
        }
    }
}

/// One state change of a breaker, as delivered by
/// [`subscribe`](crate::CircuitBreaker::subscribe) and logged as a tracing event.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The breaker's name.
    pub breaker: Arc<str>,
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// Why.
    pub reason: Reason,
    /// When, on the tokio clock.
    pub at: Instant,
    /// For a transition to [`State::Open`], how long the breaker stays open (jitter included);
    /// `None` otherwise.
    pub open_for: Option<Duration>,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "breaker {:?}: {} -> {} ({})",
            self.breaker, self.from, self.to, self.reason
        )?;
        if let Some(d) = self.open_for {
            write!(f, " for {d:?}")?;
        }
        Ok(())
    }
}
