//! The Lua scripts: each lock operation is one atomic script, sent with `EVALSHA` (the
//! client falls back to `SCRIPT LOAD` + `EVALSHA` when the server answers `NOSCRIPT`, for
//! example after a restart or `SCRIPT FLUSH`).
//!
//! Layout: `KEYS[1]` is the lease key `<prefix>{<key>}`, `KEYS[2]` the fence key
//! `<prefix>{<key>}:fence` (the key escaped, see `keys.rs`); the hash tag puts both in one
//! Cluster slot. The lease value is
//! `<token>:<granted at, server µs>:<owner>`, where the owner is a random per-process nonce
//! and a per-attempt sequence number.

use ::redis::Script;

/// How much longer than its lease a fence key lives, in milliseconds (one hour).
pub(crate) const FENCE_GRACE_MS: u64 = 3_600_000;

/// `ARGV[1]` = TTL (ms), `ARGV[2]` = owner. Returns `{1, token, value}` when granted,
/// `{0, holder's PTTL (ms), holder's age (µs)}` when held.
///
/// The token is `max(fence + 1, server time in µs)`: it grows with every grant, and keeps
/// growing after the fence counter was lost (restart without persistence, failover to a
/// replica that missed it) as long as the granting server's clock reads later than the
/// clock that granted the last token (not so after a clock step back, or a failover to a
/// replica whose clock is further behind than the time between the grants).
const ACQUIRE: &str = r"
local holder = redis.call('GET', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if holder then
  local since = tonumber(string.match(holder, '^%d+:(%d+):')) or now
  return {0, redis.call('PTTL', KEYS[1]), now - since}
end
local ttl = tonumber(ARGV[1])
local token = (tonumber(redis.call('GET', KEYS[2])) or 0) + 1
if now > token then token = now end
local tok = string.format('%d', token)
local value = tok .. ':' .. string.format('%d', now) .. ':' .. ARGV[2]
redis.call('SET', KEYS[2], tok, 'PX', ttl + 3600000)
redis.call('SET', KEYS[1], value, 'NX', 'PX', ttl)
return {1, token, value}
";

/// `ARGV[1]` = lease value. Deletes the lease only if it is still this one: 1 or 0.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// `ARGV[1]` = lease value, `ARGV[2]` = TTL (ms). Renews the lease only if it is still this
/// one (and its fence key with it): 1 or 0.
const EXTEND: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) + 3600000)
  return 1
end
return 0
";

/// `ARGV[1]` = lease value. The lease's PTTL (ms) if it is still this one, else -3.
const CHECK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PTTL', KEYS[1])
end
return -3
";

/// `ARGV[1]` = `:<owner>`. Deletes a lease granted to an acquisition that was cancelled (or
/// timed out) while the grant's reply was in flight: 1 or 0.
const ABANDON: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, -string.len(ARGV[1])) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The compiled scripts (their SHA1s are computed once).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) acquire: Script,
    pub(crate) release: Script,
    pub(crate) extend: Script,
    pub(crate) check: Script,
    pub(crate) abandon: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        debug_assert!(ACQUIRE.contains(&FENCE_GRACE_MS.to_string()));
        Self {
            acquire: Script::new(ACQUIRE),
            release: Script::new(RELEASE),
            extend: Script::new(EXTEND),
            check: Script::new(CHECK),
            abandon: Script::new(ABANDON),
        }
    }
}
