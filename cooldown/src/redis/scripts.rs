//! The Lua scripts that make every Redis cooldown decision atomically.
//!
//! Every script takes the same three keys, all under the cooldown's hash tag
//! so Redis Cluster keeps them in one slot:
//!
//! - `KEYS[1]`, the window key `<prefix>w:<key>`: absent when the key may
//!   fire; `f<µs>` (the server time it fired) while its window runs, with
//!   `PX` = the window rounded up to a millisecond; `r<token>` while a
//!   reservation is in flight, with `PX` = the reservation timeout.
//! - `KEYS[2]`, the state hash `<prefix>s:<key>`: `fired` (server µs of the
//!   last fire, for `last_fired`), the pending digest `count`, `first`,
//!   `last`, and the replies of the last fire and the last suppression
//!   (`fcall`, `scall`: `<call id> <numbers>`) so a retried call gets the
//!   same answer. Its `PEXPIRE` is refreshed on every write to the end of the
//!   key's window plus the retention.
//! - `KEYS[3]`, the index `<prefix>idx`: a sorted set of keys with a pending
//!   digest, scored by the server µs at which their window ends, so a drain
//!   finds quiet keys without `SCAN`. Entries older than the retention are
//!   trimmed on each suppression, and the set expires with its newest entry.
//!
//! `ARGV[1]` is the key (the index member), `ARGV[2]` the window in µs,
//! `ARGV[3]` the retention in µs. Time is the server's `TIME` in µs (exact in
//! a Lua double until the year 2255), so replicas with different clocks agree;
//! every reply carries the server's "now" so the caller can turn server times
//! into local instants. Numbers are written with `%.0f` because Lua's default
//! number-to-string conversion keeps only 14 digits.

use std::sync::LazyLock;

use ::redis::Script;

const PRELUDE: &str = r#"
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function str(n) return string.format('%.0f', n) end
local function ceil_ms(us)
  local ms = math.ceil(us / 1000)
  if ms < 1 then ms = 1 end
  return ms
end
-- blocked, and the end of the running window (nil while reserved)
local function window_state(now, window)
  local w = redis.call('GET', KEYS[1])
  if not w then return false, nil, false end
  if string.sub(w, 1, 1) == 'r' then return true, nil, w end
  local stop = tonumber(string.sub(w, 2)) + window
  if stop > now then return true, stop, w end
  return false, nil, w
end
local function keep_hash(until_us, now)
  redis.call('PEXPIRE', KEYS[2], ceil_ms(until_us - now))
end
local function index(score, now, retention)
  redis.call('ZADD', KEYS[3], str(score), ARGV[1])
  local ms = ceil_ms(score + retention - now)
  local ttl = redis.call('PTTL', KEYS[3])
  if ttl == -1 or (ttl >= 0 and ttl < ms) then
    redis.call('PEXPIRE', KEYS[3], ms)
  end
end
local now = now_us()
local window = tonumber(ARGV[2])
local retention = tonumber(ARGV[3])
"#;

/// `ARGV[4]` = `c` (check), `x` (critical) or `r` (reserve), `ARGV[5]` the
/// call's unique id (also the reservation token), `ARGV[6]` the reservation
/// timeout in ms.
///
/// Replies `{0, now, remaining_us, count}` for a suppression and
/// `{1, now, last_fired_or_-1, count, first, last, bypassed}` for a fire
/// (or a won reservation).
///
/// Idempotent by call id: the last fire's reply is kept in the state hash as
/// `fcall` (`<id> <numbers>`, until the next fire) and the last
/// suppression's as `scall`, so a call retried after its reply was lost gets
/// the same answer instead of deciding again (a fire's digest would be gone,
/// the window already started). A suppression retried after another
/// suppression of the key came in between is counted again.
const DECIDE: &str = r#"
local mode = ARGV[4]
local id = ARGV[5]
-- The same call again (its reply was lost): the same answer.
for _, field in ipairs({'fcall', 'scall'}) do
  local prev = redis.call('HGET', KEYS[2], field)
  if prev and string.sub(prev, 1, #id + 1) == id .. ' ' then
    local out = {}
    for n in string.gmatch(string.sub(prev, #id + 2), '%S+') do
      out[#out + 1] = tonumber(n)
    end
    return out
  end
end
local function remember(field, reply)
  local parts = {}
  for i, n in ipairs(reply) do parts[i] = str(n) end
  redis.call('HSET', KEYS[2], field, id .. ' ' .. table.concat(parts, ' '))
end
local blocked, stop = window_state(now, window)
if blocked and mode ~= 'x' then
  local count = redis.call('HINCRBY', KEYS[2], 'count', 1)
  if count == 1 then redis.call('HSET', KEYS[2], 'first', str(now)) end
  redis.call('HSET', KEYS[2], 'last', str(now))
  local remaining = window
  local ends = now + window
  if stop then
    remaining = stop - now
    ends = stop
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. str(now - retention))
  local reply = {0, now, remaining, count}
  remember('scall', reply)
  index(ends, now, retention)
  keep_hash(ends + retention, now)
  return reply
end
local st = redis.call('HMGET', KEYS[2], 'fired', 'count', 'first', 'last')
local fired = tonumber(st[1]) or -1
local count = tonumber(st[2]) or 0
local first = tonumber(st[3]) or 0
local last = tonumber(st[4]) or 0
if count > 0 then
  redis.call('HDEL', KEYS[2], 'count', 'first', 'last')
  redis.call('ZREM', KEYS[3], ARGV[1])
end
if mode == 'r' then
  redis.call('SET', KEYS[1], 'r' .. id, 'PX', ARGV[6])
else
  redis.call('SET', KEYS[1], 'f' .. str(now), 'PX', ceil_ms(window))
  redis.call('HSET', KEYS[2], 'fired', str(now))
end
local bypassed = 0
if blocked then bypassed = 1 end
local reply = {1, now, fired, count, first, last, bypassed}
remember('fcall', reply)
keep_hash(now + window + retention, now)
return reply
"#;

/// `ARGV[4]` = the token. Starts the window now unless another replica's
/// reservation holds the key (ours timed out and was taken over). Replies
/// `{owned, now}`.
const COMMIT: &str = r#"
local w = redis.call('GET', KEYS[1])
local mine = 'r' .. ARGV[4]
local owned = 0
if w == mine then owned = 1 end
if owned == 1 or not w or string.sub(w, 1, 1) ~= 'r' then
  redis.call('SET', KEYS[1], 'f' .. str(now), 'PX', ceil_ms(window))
end
redis.call('HSET', KEYS[2], 'fired', str(now))
keep_hash(now + window + retention, now)
if (tonumber(redis.call('HGET', KEYS[2], 'count')) or 0) > 0 then
  index(now + window, now, retention)
end
return {owned, now}
"#;

/// `ARGV[4]` = the token, `ARGV[5..=7]` = the digest the reservation took
/// (`count`, `first`, `last`; count 0 for none). Frees the key if the token
/// still holds it and merges the digest back. Replies `{owned, now}`.
const ROLLBACK: &str = r#"
local w = redis.call('GET', KEYS[1])
local owned = 0
if w == 'r' .. ARGV[4] then
  owned = 1
  redis.call('DEL', KEYS[1])
end
local taken = tonumber(ARGV[5])
if taken > 0 then
  local first = tonumber(ARGV[6])
  local last = tonumber(ARGV[7])
  local st = redis.call('HMGET', KEYS[2], 'count', 'first', 'last')
  local count = tonumber(st[1]) or 0
  if count > 0 then
    first = math.min(first, tonumber(st[2]))
    last = math.max(last, tonumber(st[3]))
  end
  redis.call('HSET', KEYS[2], 'count', str(count + taken), 'first', str(first), 'last', str(last))
  local blocked, stop = window_state(now, window)
  local ends = now
  if blocked then ends = stop or (now + window) end
  index(ends, now, retention)
  keep_hash(ends + retention, now)
end
return {owned, now}
"#;

/// Takes the pending digest of one key whose window is over. Replies
/// `{0, now}` when there is nothing to take (yet), else
/// `{1, now, last_fired_or_-1, count, first, last}`.
const DRAIN: &str = r#"
local blocked, stop = window_state(now, window)
local st = redis.call('HMGET', KEYS[2], 'fired', 'count', 'first', 'last')
local count = tonumber(st[2]) or 0
if count == 0 then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return {0, now}
end
if blocked then
  index(stop or (now + window), now, retention)
  return {0, now}
end
redis.call('HDEL', KEYS[2], 'count', 'first', 'last')
redis.call('ZREM', KEYS[3], ARGV[1])
return {1, now, tonumber(st[1]) or -1, count, tonumber(st[3]), tonumber(st[4])}
"#;

/// `KEYS[1]` = the index, `ARGV[1]` = the most members to return, `ARGV[2]`
/// = how many to skip (members the caller could not parse and left): keys
/// whose window ended by the server's now.
const DUE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now), 'LIMIT', tonumber(ARGV[2]), tonumber(ARGV[1]))
"#;

/// The compiled scripts (SHA1 computed once per process). `invoke_async`
/// sends `EVALSHA` and, on `NOSCRIPT` (a restarted server, `SCRIPT FLUSH`),
/// loads the script and retries.
pub(crate) struct Scripts {
    pub(crate) decide: Script,
    pub(crate) commit: Script,
    pub(crate) rollback: Script,
    pub(crate) drain: Script,
    pub(crate) due: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let with_prelude = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
    Scripts {
        decide: with_prelude(DECIDE),
        commit: with_prelude(COMMIT),
        rollback: with_prelude(ROLLBACK),
        drain: with_prelude(DRAIN),
        due: Script::new(DUE),
    }
});
