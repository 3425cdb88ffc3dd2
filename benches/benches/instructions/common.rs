//! Shared by the instruction-count benchmarks `instructions_<primitive>.rs` (callgrind, through
//! `gungraun`): each Seawall hot path beside its best peer on the same work. Wall time on a
//! shared machine is noise; instructions are repeatable.
//!
//! One binary per primitive: the peers' generic code is compiled into the benchmark binary, and
//! how rustc splits a binary into codegen units decides what LLVM may inline. In one binary for
//! all four primitives, a change in one crate moved the counts of the others' contenders
//! (governor's suppressed check measured 296 or 315 instructions, the retry fail x2 case 372 or
//! 438, with no change to their code). Apart, a binary changes only with its own primitive.
//!
//! Every contender is driven the way its users call it: sync peers are called synchronously,
//! async APIs (ours and the async peers) are awaited inside one current-thread tokio runtime.
//! Each benchmark runs [`OPS`] operations after a setup that is not counted (building the
//! runtime and the instance, warming every key), so the count per operation is the total
//! divided by [`OPS`]; `.ci/instructions` prints that table with the ratio per case and fails
//! when a Seawall case costs more than its best peer.
//!
//! Cases (binary: group / contender):
//! - `instructions_breaker`: `breaker_call`: a closed breaker around a call that succeeds — `seawall` (`call`, awaited)
//!   vs `failsafe` (consecutive-failures policy, sync `call`).
//! - `breaker_permit`: the same through the permit API — `seawall` (`try_acquire` +
//!   `success`) vs `failsafe` (`is_call_permitted` + `on_success`).
//! - `instructions_retry`: `retry_ok`: an operation that succeeds on the first try — `seawall` vs `tokio_retry` and
//!   `tokio_retry2` (the best of the two is the peer); `bare_await` is the floor, not a peer.
//! - `retry_fail2`: fails twice, then succeeds, with a zero delay — `seawall` vs `backon` with a
//!   sleeper that skips zero delays (tokio rounds `sleep(0)` up to a 1 ms tick).
//! - `instructions_keyed_lock`: `lock_1key` / `lock_10k`: lock + unlock, uncontended — `seawall` vs `dashmap_evict` (a
//!   `DashMap<u64, Arc<tokio::sync::Mutex<()>>>` that evicts idle entries, the leak-free way
//!   people write it).
//! - `instructions_cooldown`: `cooldown_1key` / `cooldown_10k`: a suppressed check — `seawall` vs `governor` (keyed
//!   limiter, one per window). Under valgrind a clock read is a syscall whose kernel time is
//!   not counted, so these two also need their criterion ratio (`benches/cooldown.rs`).
//!
//! The spool is not here: its cost is `write` and `fdatasync`, which callgrind does not count;
//! `benches/fallback_sink.rs` measures it against a raw write loop.

#![allow(dead_code)] // each binary uses only some of these

use tokio::runtime::Runtime;

/// Operations per benchmark run.
pub(crate) const OPS: u64 = 1_000;
/// Keys visited round-robin in the `*_10k` cases.
pub(crate) const MANY: u64 = 10_000;

pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The next of `keys` keys, round-robin.
pub(crate) fn next_key(i: &mut u64, keys: u64) -> u64 {
    *i += 1;
    if *i >= keys {
        *i = 0;
    }
    *i
}
