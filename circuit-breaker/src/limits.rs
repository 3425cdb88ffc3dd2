//! The bounds every setting is checked against: a leaf module, so the builder, the windows
//! and the open-duration schedule share them without depending on each other.

use std::time::Duration;

/// The longest duration any setting accepts: 365 days. Longer open durations, probe
/// durations, slow-call thresholds or windows make no sense for a breaker, and the bound keeps
/// every deadline representable.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The most concurrent half-open probes.
pub(crate) const MAX_PROBES: u32 = 10_000;
