//! The state every clone of a [`RedisBackend`](super::RedisBackend) shares, and the script
//! calls it makes (acquire attempt, renewal) with their replies decoded.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redis::{FromRedisValue, ScriptInvocation, Value};
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::RedisBackendError;
use super::client::Client;
use super::failures::Failures;
use super::lease::LeaseState;
use super::scripts::Scripts;
use super::ttl::{lease_deadline, ttl_millis};
use crate::{LockEvents, MemoryBackend};

pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) prefix: String,
    pub(crate) auto_renew: bool,
    /// The bounds of the backoff against another process's lease: `(min, max)`.
    pub(crate) backoff: (Duration, Duration),
    /// Per-key FIFO queues in this process: only the head waiter contends on Redis.
    pub(crate) local: MemoryBackend<String>,
    pub(crate) local_events: LockEvents,
    nonce: u64,
    seq: AtomicU64,
    rng: AtomicU64,
    pub(crate) runtime: Handle,
    pub(crate) scripts: Scripts,
    /// Backend errors shared with the waiters queued in this process on the same key.
    pub(crate) failures: Arc<Failures>,
}

/// What one acquire script call found.
pub(crate) enum Attempt {
    /// Granted: the fencing token and the value stored at the lease key.
    Granted { token: u64, value: String },
    /// Held by someone else, for `pttl` more (`None`: no expiry) and since `age`.
    Held {
        pttl: Option<Duration>,
        age: Duration,
    },
}

/// What one renewal found.
pub(crate) enum Renewal {
    Renewed {
        sent_at: Instant,
        deadline: Instant,
    },
    /// Another value (or none) in Redis.
    Gone,
    /// Redis extended it, but the local deadline had passed by the time it answered.
    Expired,
    Failed(RedisBackendError),
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Inner {
    pub(crate) fn new(
        client: Client,
        prefix: String,
        auto_renew: bool,
        backoff: (Duration, Duration),
        runtime: Handle,
    ) -> Self {
        let nonce = RandomState::new().hash_one(std::process::id());
        Self {
            local_events: LockEvents::new(
                Arc::from(format!("{} local queue", client.addr())),
                None,
            ),
            client,
            prefix,
            auto_renew,
            backoff,
            local: MemoryBackend::new(16),
            nonce,
            seq: AtomicU64::new(0),
            rng: AtomicU64::new(splitmix(nonce)),
            runtime,
            scripts: Scripts::new(),
            failures: Arc::default(),
        }
    }

    pub(crate) fn addr(&self) -> &Arc<str> {
        self.client.addr()
    }

    /// A fresh owner id: the process nonce and a sequence number.
    pub(crate) fn owner(&self) -> String {
        format!(
            "{:016x}.{}",
            self.nonce,
            self.seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A random duration in `[0, cap]`.
    pub(crate) fn jitter(&self, cap: Duration) -> Duration {
        let r = splitmix(self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed));
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(r % nanos.saturating_add(1))
    }

    fn unexpected(&self, reply: impl fmt::Debug) -> RedisBackendError {
        RedisBackendError::UnexpectedReply {
            addr: Arc::clone(self.addr()),
            reply: format!("{reply:?}"),
        }
    }

    /// Runs one script call, bounded by the command timeout.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, RedisBackendError> {
        Ok(self.client.invoke(invocation).await?)
    }

    /// Sends one acquire script for `owner`.
    pub(crate) async fn try_grant(
        &self,
        lease_key: &str,
        fence_key: &str,
        ttl_ms: u64,
        owner: &str,
    ) -> Result<Attempt, RedisBackendError> {
        let mut inv = self.scripts.acquire.prepare_invoke();
        inv.key(lease_key).key(fence_key).arg(ttl_ms).arg(owner);
        let reply: Vec<Value> = self.invoke(&inv).await?;
        let int = |v: &Value| match v {
            Value::Int(i) => Some(*i),
            _ => None,
        };
        match reply.as_slice() {
            [Value::Int(1), token, value] => {
                let token = int(token).and_then(|t| u64::try_from(t).ok());
                let value = match value {
                    Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
                    Value::SimpleString(s) => Some(s.clone()),
                    _ => None,
                };
                match (token, value) {
                    (Some(token), Some(value)) => Ok(Attempt::Granted { token, value }),
                    _ => Err(self.unexpected(&reply)),
                }
            }
            [Value::Int(0), pttl, age] => {
                let (Some(pttl), Some(age)) = (int(pttl), int(age)) else {
                    return Err(self.unexpected(&reply));
                };
                Ok(Attempt::Held {
                    pttl: u64::try_from(pttl).ok().map(Duration::from_millis),
                    age: Duration::from_micros(u64::try_from(age).unwrap_or(0)),
                })
            }
            _ => Err(self.unexpected(&reply)),
        }
    }

    /// Extends `lease` by `ttl` if it is still ours.
    pub(crate) async fn renew(&self, st: &LeaseState, ttl: Duration) -> Renewal {
        let sent_at = Instant::now();
        let ttl_ms = ttl_millis(ttl);
        let mut inv = self.scripts.extend.prepare_invoke();
        inv.key(&st.lease_key)
            .key(&st.fence_key)
            .arg(&st.value)
            .arg(ttl_ms);
        match self.invoke::<i64>(&inv).await {
            Ok(1) => {
                let deadline = lease_deadline(sent_at, Duration::from_millis(ttl_ms));
                if !st.renewed(deadline) {
                    // The local deadline passed while the call was in flight: the lease is
                    // over for this process even though Redis extended the key (the guard's
                    // release deletes it).
                    st.mark_gone(Instant::now());
                    return Renewal::Expired;
                }
                self.local
                    .set_deadline(st.local.hash(), st.local_token.get(), deadline);
                Renewal::Renewed { sent_at, deadline }
            }
            Ok(_) => {
                st.mark_gone(Instant::now());
                Renewal::Gone
            }
            Err(e) => {
                st.events.backend_error(&e);
                Renewal::Failed(e)
            }
        }
    }

    /// Whether `lease` is still ours in Redis: `Ok(false)` if Redis holds another value (or
    /// none), which marks it gone.
    pub(crate) async fn check(&self, st: &LeaseState) -> Result<bool, RedisBackendError> {
        let mut inv = self.scripts.check.prepare_invoke();
        inv.key(&st.lease_key).arg(&st.value);
        match self.invoke::<i64>(&inv).await {
            Ok(-3) => {
                st.mark_gone(Instant::now());
                Ok(false)
            }
            Ok(_) => Ok(true),
            Err(e) => {
                st.events.backend_error(&e);
                Err(e)
            }
        }
    }
}
