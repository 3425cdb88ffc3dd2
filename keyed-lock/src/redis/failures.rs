//! Backend errors shared with the waiters queued in this process on the same key.
//!
//! Only the head of a key's in-process queue talks to Redis. When its call fails (or the
//! release that would hand the key on fails), the waiters that were already queued fail at
//! once with the same error instead of each sending its own call and waiting its own full
//! command timeout in turn.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::RedisBackendError;

/// Per key with queued waiters: how many, and the last backend error seen on that key.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    keys: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    waiters: usize,
    last: Option<(Instant, RedisBackendError)>,
}

impl Failures {
    /// Registers a waiter on `key` until the returned guard drops (the entry then goes away
    /// with the last waiter: nothing is kept for keys nobody waits for).
    pub(crate) fn register(self: &Arc<Self>, key: &str) -> Registration {
        self.keys
            .lock()
            .entry(key.to_owned())
            .or_insert(Entry {
                waiters: 0,
                last: None,
            })
            .waiters += 1;
        Registration {
            failures: Arc::clone(self),
            key: key.to_owned(),
        }
    }

    /// A Redis call on `key` failed now; remembered only while waiters are registered.
    pub(crate) fn record(&self, key: &str, error: &RedisBackendError) {
        if let Some(entry) = self.keys.lock().get_mut(key) {
            entry.last = Some((Instant::now(), error.clone()));
        }
    }

    /// The error of a call on `key` that failed at or after `since` (when the caller
    /// queued), if any.
    pub(crate) fn failed_since(&self, key: &str, since: Instant) -> Option<RedisBackendError> {
        match &self.keys.lock().get(key)?.last {
            Some((at, error)) if *at >= since => Some(error.clone()),
            _ => None,
        }
    }
}

/// A registered waiter (see [`Failures::register`]).
#[derive(Debug)]
pub(crate) struct Registration {
    failures: Arc<Failures>,
    key: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut keys = self.failures.keys.lock();
        if let Some(entry) = keys.get_mut(&self.key) {
            entry.waiters -= 1;
            if entry.waiters == 0 {
                keys.remove(&self.key);
            }
        }
    }
}
