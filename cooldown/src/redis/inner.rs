//! The state every clone of a [`RedisCooldown`](super::RedisCooldown) shares, and the script
//! calls it makes (decide, commit, rollback), bounded, counted and logged.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ::redis::{FromRedisValue, Script};
use prometheus_client::metrics::counter::Counter;
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::client::{Client, ClientError};
use super::error::RedisCooldownError;
use super::policy::UnreachablePolicy;
use super::reply::{self, Raw, lost_reply, micros};
use super::reservation::Taken;
use super::scripts::SCRIPTS;
use crate::metrics::InstanceMetrics;
use crate::{Decision, Fire, Metrics, Suppressed};

pub(crate) struct RedisInner {
    pub(crate) client: Client,
    handle: Handle,
    /// The user's prefix.
    pub(crate) prefix: String,
    /// `<prefix>{<name>}:`, the start of every key.
    tagged: String,
    pub(crate) index: String,
    pub(crate) name: String,
    pub(crate) window: Duration,
    window_us: u64,
    reservation_ms: u64,
    retention_us: u64,
    pub(crate) policy: UnreachablePolicy,
    metrics: Option<(InstanceMetrics, Counter)>,
    token_seed: u64,
    tokens: AtomicU64,
    /// Set while calls fail, so the outage is logged when it starts and ends,
    /// not on every call.
    down: AtomicBool,
    /// Set once a drain met a member that does not parse as the key type.
    pub(crate) warned_unparsable: AtomicBool,
}

impl RedisInner {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        client: Client,
        handle: Handle,
        prefix: String,
        name: String,
        window: Duration,
        reservation_timeout: Duration,
        retention: Duration,
        policy: UnreachablePolicy,
        metrics: Option<Metrics>,
    ) -> Self {
        let token_seed = RandomState::new().hash_one((
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        ));
        Self {
            client,
            handle,
            tagged: format!("{prefix}{{{name}}}:"),
            index: format!("{prefix}{{{name}}}:idx"),
            prefix,
            metrics: metrics.map(|m| (m.instance(&name), m.degraded(&name))),
            name,
            window,
            window_us: micros(window),
            reservation_ms: u64::try_from(reservation_timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            retention_us: micros(retention),
            policy,
            token_seed,
            tokens: AtomicU64::new(0),
            down: AtomicBool::new(false),
            warned_unparsable: AtomicBool::new(false),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn addr(&self) -> &Arc<str> {
        self.client.addr()
    }

    pub(crate) fn unexpected(&self, reply: impl fmt::Debug) -> RedisCooldownError {
        RedisCooldownError::UnexpectedReply {
            addr: Arc::clone(self.addr()),
            reply: format!("{reply:?}"),
        }
    }

    /// Runs `script` on the key's three keys with `args` after the common
    /// ones, bounded by the timeout.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        script: &Script,
        member: &str,
        args: &[&str],
    ) -> Result<T, RedisCooldownError> {
        let mut inv = script.prepare_invoke();
        self.keys_and_args(&mut inv, member, args);
        self.observe(self.client.invoke(&inv).await)
    }

    /// The key's three keys, the common arguments, then `args`.
    fn keys_and_args(&self, inv: &mut ::redis::ScriptInvocation<'_>, member: &str, args: &[&str]) {
        inv.key(format!("{}w:{member}", self.tagged))
            .key(format!("{}s:{member}", self.tagged))
            .key(&self.index)
            .arg(member)
            .arg(self.window_us)
            .arg(self.retention_us);
        for a in args {
            inv.arg(*a);
        }
    }

    /// Runs a script that is not about one key, bounded by the timeout.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &::redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisCooldownError> {
        self.observe(self.client.invoke(invocation).await)
    }

    /// Logs when an outage begins (the first failed call) and ends (the first
    /// call served after it).
    fn observe<T>(&self, result: Result<T, ClientError>) -> Result<T, RedisCooldownError> {
        let result = result.map_err(RedisCooldownError::from);
        match &result {
            Ok(_) => {
                if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        cooldown = %self.name,
                        addr = %self.addr(),
                        "redis cooldown: redis answers again; decisions are shared again"
                    );
                }
            }
            Err(e) => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        cooldown = %self.name,
                        addr = %self.addr(),
                        policy = ?self.policy,
                        error = %e,
                        "redis cooldown: redis does not answer; decisions are degraded until it does"
                    );
                }
            }
        }
        result
    }

    /// Spawns `task` on the caller's runtime, or on the one the cooldown was
    /// built in when the caller is not on a tokio runtime.
    pub(crate) fn spawn<T: Send + 'static>(
        &self,
        task: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        match Handle::try_current() {
            Ok(current) => current.spawn(task),
            Err(_) => self.handle.spawn(task),
        }
    }

    pub(crate) fn next_token(&self) -> String {
        let n = self.tokens.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{n:x}", self.token_seed)
    }

    /// One `DECIDE` call. `mode` is `c`, `x` or `r`; `id` is unique to the
    /// call (the reservation token for `r`).
    ///
    /// Sent at most twice with the same id: if the first attempt gets no
    /// reply within two thirds of the timeout, or its connection fails, it is
    /// sent again within what is left. The script answers a repeated id with
    /// the reply it gave the first time, so a fire whose reply was lost after
    /// it ran (the digest it took, the window it started) is still reported.
    pub(crate) async fn decide(
        &self,
        member: &str,
        mode: &str,
        id: &str,
    ) -> Result<Raw, RedisCooldownError> {
        let reservation_ms = self.reservation_ms.to_string();
        let mut inv = SCRIPTS.decide.prepare_invoke();
        self.keys_and_args(&mut inv, member, &[mode, id, &reservation_ms]);
        let first_share = self.client.command_timeout().saturating_mul(2) / 3;
        let call = async {
            match tokio::time::timeout(first_share, self.client.send::<Vec<i64>>(&inv)).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(e)) if !lost_reply(&e) => Err(e),
                Ok(Err(_)) | Err(_) => self.client.send(&inv).await,
            }
        };
        let reply: Vec<i64> = self.observe(self.client.bounded(call).await)?;
        reply::decision(&reply, Instant::now()).ok_or_else(|| self.unexpected(&reply))
    }

    pub(crate) async fn commit(&self, member: &str, token: &str) -> Result<(), RedisCooldownError> {
        let reply: Vec<i64> = self.run(&SCRIPTS.commit, member, &[token]).await?;
        match *reply.as_slice() {
            [owned, _now] => {
                if let Some((m, _)) = &self.metrics {
                    m.fire.inc();
                }
                if owned == 0 {
                    tracing::debug!(
                        cooldown = %self.name,
                        "cooldown reservation committed after it had expired in redis"
                    );
                }
                Ok(())
            }
            _ => Err(self.unexpected(&reply)),
        }
    }

    pub(crate) async fn rollback(
        &self,
        member: &str,
        token: &str,
        taken: Taken,
    ) -> Result<(), RedisCooldownError> {
        let (count, first, last) = (
            taken.count.to_string(),
            taken.first.to_string(),
            taken.last.to_string(),
        );
        let reply: Vec<i64> = self
            .run(&SCRIPTS.rollback, member, &[token, &count, &first, &last])
            .await?;
        match *reply.as_slice() {
            [owned, _now] => {
                if let Some((m, _)) = &self.metrics {
                    m.rolled_back.inc();
                }
                tracing::debug!(
                    cooldown = %self.name,
                    still_owned = owned == 1,
                    "cooldown reservation rolled back"
                );
                Ok(())
            }
            _ => Err(self.unexpected(&reply)),
        }
    }

    /// Counts and logs a call Redis did not serve; the caller applies the policy.
    pub(crate) fn degraded(&self, what: &'static str, err: &RedisCooldownError) {
        if let Some((_, degraded)) = &self.metrics {
            degraded.inc();
        }
        // The outage itself was logged at `warn` when it began (`bounded`).
        tracing::debug!(
            cooldown = %self.name,
            call = what,
            policy = ?self.policy,
            error = %err,
            "redis cooldown call degraded"
        );
    }

    pub(crate) fn count(&self, d: &Decision) {
        if let Some((m, _)) = &self.metrics {
            match d {
                Decision::Fire(f) if f.bypassed => m.bypass.inc(),
                Decision::Fire(_) => m.fire.inc(),
                Decision::Suppressed(_) => m.suppressed.inc(),
            };
        }
    }

    pub(crate) fn degraded_fire() -> Fire {
        Fire {
            suppressed_since_last: 0,
            last_fired: None,
            digest: None,
            bypassed: false,
            degraded: true,
        }
    }

    pub(crate) fn degraded_suppressed() -> Suppressed {
        Suppressed {
            remaining: Duration::ZERO,
            suppressed: 0,
            degraded: true,
        }
    }
}
