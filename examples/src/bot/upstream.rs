//! A simulated LLM-like upstream API serving a few models, whose behaviour the scenario
//! switches at run time.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The models the upstream serves; each has its own circuit breaker.
pub(crate) const MODELS: [&str; 3] = ["model-a", "model-b", "model-c"];

/// The model a user's messages go to.
pub(crate) fn model_for(user: u32) -> &'static str {
    MODELS[user as usize % MODELS.len()]
}

/// How the upstream behaves right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Answers after a short latency; now and then asks the caller to back off (429).
    Healthy,
    /// Fails most calls with a 503, some with a `Retry-After` hint.
    Failing,
    /// Answers, but slower than the per-attempt timeout.
    Slow,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::Failing,
            2 => Mode::Slow,
            _ => Mode::Healthy,
        }
    }
}

/// An error the upstream returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpstreamError {
    /// 503 or 429: worth retrying, maybe after the hinted delay.
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The attempt took longer than the per-attempt timeout.
    Timeout,
    /// 400: retrying would not help.
    BadRequest,
}

impl UpstreamError {
    /// Whether a retry may succeed.
    pub(crate) fn is_transient(&self) -> bool {
        !matches!(self, UpstreamError::BadRequest)
    }

    /// The server's `Retry-After` hint, if it sent one.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Unavailable {
                status,
                retry_after: Some(d),
            } => write!(
                f,
                "upstream returned {status} (retry after {} ms)",
                d.as_millis()
            ),
            UpstreamError::Unavailable { status, .. } => write!(f, "upstream returned {status}"),
            UpstreamError::Timeout => f.write_str("upstream attempt timed out"),
            UpstreamError::BadRequest => f.write_str("upstream rejected the request (400)"),
        }
    }
}

impl std::error::Error for UpstreamError {}

/// The simulated upstream. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    mode: AtomicU8,
    /// A model that fails whatever the mode (index into [`MODELS`] plus one; 0 for none).
    failing_model: AtomicUsize,
    rng: Mutex<SmallRng>,
    scale: f64,
    calls: AtomicU64,
}

impl Upstream {
    pub(crate) fn new(seed: u64, scale: f64) -> Self {
        Upstream {
            inner: Arc::new(Inner {
                mode: AtomicU8::new(0),
                failing_model: AtomicUsize::new(0),
                rng: Mutex::new(SmallRng::seed_from_u64(seed ^ 0x5eed_u64)),
                scale,
                calls: AtomicU64::new(0),
            }),
        }
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        self.inner.mode.store(mode as u8, Ordering::Relaxed);
    }

    /// Makes `model` fail (as [`Mode::Failing`]) whatever the mode, or no model with `None`.
    pub(crate) fn set_failing_model(&self, model: Option<&str>) {
        let index = model
            .and_then(|m| MODELS.iter().position(|&known| known == m))
            .map_or(0, |i| i + 1);
        self.inner.failing_model.store(index, Ordering::Relaxed);
    }

    pub(crate) fn mode(&self) -> Mode {
        Mode::from_u8(self.inner.mode.load(Ordering::Relaxed))
    }

    /// Calls made so far (every attempt counts).
    pub(crate) fn calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    fn scaled(&self, ms: u64) -> Duration {
        Duration::from_secs_f64(ms as f64 / 1000.0 * self.inner.scale)
    }

    /// Asks the upstream to answer `prompt`, naming no model.
    pub(crate) async fn ask(&self, prompt: &str) -> Result<String, UpstreamError> {
        self.respond(None, prompt).await
    }

    /// Asks `model` of the upstream to answer `prompt`.
    pub(crate) async fn ask_model(
        &self,
        model: &str,
        prompt: &str,
    ) -> Result<String, UpstreamError> {
        self.respond(Some(model), prompt).await
    }

    async fn respond(&self, model: Option<&str>, prompt: &str) -> Result<String, UpstreamError> {
        self.inner.calls.fetch_add(1, Ordering::Relaxed);
        let failing = self.inner.failing_model.load(Ordering::Relaxed);
        let mode = match model {
            Some(m) if failing > 0 && MODELS.get(failing - 1) == Some(&m) => Mode::Failing,
            _ => self.mode(),
        };
        // Decide everything up front so the RNG lock is never held across an await.
        let (latency_ms, outcome) = {
            let mut rng = self.inner.rng.lock();
            let roll: f64 = rng.random();
            match mode {
                Mode::Healthy => {
                    let latency = rng.random_range(10..40);
                    if roll < 0.03 {
                        let hint = rng.random_range(50..150);
                        (
                            latency,
                            Err(UpstreamError::Unavailable {
                                status: 429,
                                retry_after: Some(self.scaled(hint)),
                            }),
                        )
                    } else if roll < 0.035 {
                        (latency, Err(UpstreamError::BadRequest))
                    } else {
                        (latency, Ok(()))
                    }
                }
                Mode::Failing => {
                    let latency = rng.random_range(5..20);
                    if roll < 0.9 {
                        let retry_after =
                            (roll < 0.3).then(|| self.scaled(rng.random_range(100..300)));
                        (
                            latency,
                            Err(UpstreamError::Unavailable {
                                status: 503,
                                retry_after,
                            }),
                        )
                    } else {
                        (latency, Ok(()))
                    }
                }
                Mode::Slow => (rng.random_range(800..1200), Ok(())),
            }
        };
        tokio::time::sleep(self.scaled(latency_ms)).await;
        outcome.map(|()| match model {
            Some(model) => format!("{model}'s answer to {prompt:?}"),
            None => format!("answer to {prompt:?}"),
        })
    }
}
