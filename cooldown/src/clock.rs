//! The in-memory cooldown's clock: tokio's clock wherever it can be paused, a
//! TSC clock everywhere else.
//!
//! A check reads the clock once, and that read was most of its cost:
//! `tokio::time::Instant::now()` is a `clock_gettime` (about 23 ns on the
//! benchmark machine), a TSC read through `quanta` about 9.5 ns (issue 14).
//! The seawall rule (DESIGN.md, *Time*) allows a cheaper source on one
//! condition: under a paused tokio clock it reads the paused time. A tokio
//! clock can only be paused on a `current_thread` runtime (tokio refuses to
//! pause any other flavor), and `tokio::time::Instant::now()` follows the
//! runtime current on the calling thread. So:
//!
//! - a runtime is current on this thread and it is not a multi-thread one
//!   (it may be paused): read `tokio::time::Instant::now()`, exactly as before;
//! - otherwise (no runtime, or a multi-thread runtime, whose clock is the
//!   system's): read the TSC, calibrated by `quanta` against the monotonic
//!   clock once per process and placed on the same timeline as tokio's;
//!   except on a thread where a runtime that may be paused was ever current,
//!   which keeps reading tokio's clock (see `tokio_clock_may_be_paused`).
//!
//! Both give ticks (nanoseconds) since the cooldown's `base`, the tokio instant
//! at which it was built. The TSC and the monotonic clock may drift apart by a
//! few parts per million (quanta's calibration error; NTP slews only the
//! latter), so a window measured on one is within ppm of the other; the
//! decisions tolerate a `now` that steps back (see [`crate::state`]).

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::time::Instant;

/// The process-wide TSC clock and one reading of it paired with the
/// monotonic clock, taken back to back.
struct Tsc {
    clock: quanta::Clock,
    /// A raw counter reading (`quanta::Clock::raw`), scaled only as a delta.
    at: u64,
    std: std::time::Instant,
}

static TSC: OnceLock<Tsc> = OnceLock::new();

impl Tsc {
    fn get() -> &'static Tsc {
        TSC.get_or_init(|| {
            // Calibrates once per process (at least 0.5 ms, at most 200 ms).
            let clock = quanta::Clock::new();
            let at = clock.raw();
            let std = std::time::Instant::now();
            Tsc { clock, at, std }
        })
    }
}

/// A cooldown's clock, reading ticks since the tokio instant it was built at.
pub(crate) struct Clock {
    base: Instant,
    tsc: &'static Tsc,
    /// Ticks from `base` to `tsc.std` (negative when `base` is later, e.g. a
    /// cooldown built after the first one, or on a paused clock that was
    /// advanced).
    tsc_offset: i64,
}

impl Clock {
    /// A clock whose tick 0 is now (tokio's now, so a paused clock's time).
    pub(crate) fn new() -> Self {
        let base = Instant::now();
        let tsc = Tsc::get();
        let base_std = base.into_std();
        let tsc_offset = match tsc.std.checked_duration_since(base_std) {
            Some(d) => i64::try_from(duration_ticks(d)).unwrap_or(i64::MAX),
            None => i64::try_from(duration_ticks(base_std.duration_since(tsc.std)))
                .map_or(i64::MIN, |t| -t),
        };
        Clock {
            base,
            tsc,
            tsc_offset,
        }
    }

    /// The tokio instant of tick 0.
    pub(crate) fn base(&self) -> Instant {
        self.base
    }

    /// Ticks since `base`, 0 if `base` is later.
    #[inline]
    pub(crate) fn now_ticks(&self) -> u64 {
        if tokio_clock_may_be_paused() {
            self.tokio_ticks()
        } else {
            self.tsc_ticks()
        }
    }

    /// Ticks since `base` on tokio's clock (the paused time if it is paused).
    pub(crate) fn tokio_ticks(&self) -> u64 {
        duration_ticks(Instant::now().saturating_duration_since(self.base))
    }

    /// Ticks since `base` on the TSC clock.
    pub(crate) fn tsc_ticks(&self) -> u64 {
        let clock = &self.tsc.clock;
        let since = clock.delta_as_nanos(self.tsc.at, clock.raw());
        u64::try_from(self.tsc_offset.saturating_add_unsigned(since)).unwrap_or(0)
    }

    /// Tokio's now, as `now_ticks` chooses: `tokio::time::Instant::now()`
    /// where a paused clock may be current, else the TSC clock's reading of
    /// the monotonic clock (the keyed lock's leases; the cooldown counts
    /// ticks instead).
    #[allow(dead_code, reason = "read by the keyed lock's copy of this file")]
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        if tokio_clock_may_be_paused() {
            Instant::now()
        } else {
            self.tsc_now()
        }
    }

    /// The monotonic clock's now, read from the TSC: the TSC's advance since
    /// this thread's anchor (a TSC reading paired with the monotonic clock),
    /// re-anchored every 50 ms. Extrapolating from one process-wide
    /// pairing would drift without bound, by the calibration's rate error and
    /// by NTP's slewing of the monotonic clock (which tokio's timers follow):
    /// tens of ms a day. Re-anchoring bounds the drift to the rate error over
    /// 50 ms (under 1 µs at 10 ppm); at a re-anchor the reading may step
    /// back by that much.
    #[allow(dead_code, reason = "read by the keyed lock's copy of this file")]
    pub(crate) fn tsc_now(&self) -> Instant {
        let clock = &self.tsc.clock;
        let raw = clock.raw();
        if let Some((at, std)) = TSC_ANCHOR.with(Cell::get)
            && raw >= at
        {
            let since = clock.delta_as_nanos(at, raw);
            if since < REANCHOR_NANOS {
                return Instant::from_std(std + Duration::from_nanos(since));
            }
        }
        reanchor(raw)
    }
}

/// How long a thread extrapolates the monotonic clock from one TSC reading
/// (see `Clock::tsc_now`).
#[allow(dead_code, reason = "read by the keyed lock's copy of this file")]
const REANCHOR_NANOS: u64 = 50_000_000;

/// Pairs `raw` with the monotonic clock as this thread's anchor.
#[allow(dead_code, reason = "read by the keyed lock's copy of this file")]
#[cold]
#[inline(never)]
fn reanchor(raw: u64) -> Instant {
    let std = std::time::Instant::now();
    TSC_ANCHOR.with(|a| a.set(Some((raw, std))));
    Instant::from_std(std)
}

thread_local! {
    /// Set on a thread once it has run a task of a multi-thread runtime: a
    /// worker (or blocking-pool) thread, which belongs to that runtime for
    /// its whole life.
    static MULTI_THREAD_WORKER: Cell<bool> = const { Cell::new(false) };
    /// Set on a thread once a runtime that may be paused was current on it.
    /// Reading tokio's clock is never wrong, only slower than the TSC, so the
    /// thread keeps reading it without asking again (see
    /// [`tokio_clock_may_be_paused`]).
    static TOKIO_CLOCK_THREAD: Cell<bool> = const { Cell::new(false) };
    /// This thread's TSC anchor for `Clock::tsc_now`: a raw TSC reading and
    /// the monotonic clock read just after it.
    static TSC_ANCHOR: Cell<Option<(u64, std::time::Instant)>> = const { Cell::new(None) };
}

/// True when a tokio runtime is current on this thread and it is not a
/// multi-thread one: its clock may be paused, so only
/// `tokio::time::Instant::now()` tells the time. (Tokio pauses only
/// `current_thread` runtimes; any flavor not known to be unpausable counts as
/// pausable.)
///
/// `Handle::try_current()` clones the runtime's handle: on a multi-thread
/// runtime that is a reference-count increment and decrement on one cache
/// line shared by every worker, on every check. So a task of a multi-thread
/// runtime asks once per thread: tasks run only on their runtime's own
/// threads. (Two ways around it would read the TSC clock where a paused
/// clock is current: entering a paused `current_thread` runtime's context
/// with `Handle::enter` from inside such a task, or running one from a
/// blocking-pool thread of the multi-thread runtime that had already run a
/// `spawn_blocking` task calling a cooldown.)
///
/// A thread on which a runtime that may be paused was ever current answers
/// from a cache too: it reads tokio's clock from then on. That answer is
/// never wrong (tokio's clock is the reference; the TSC is only the cheaper
/// stand-in), and it spares every check on a `current_thread` runtime the
/// handle's clone: 35 of the 324 instructions of a suppressed check there
/// (issue 14). The cost: such a thread, once its runtime is gone, reads the
/// monotonic clock (`clock_gettime`, about 16 ns here) instead of the TSC
/// (about 10 ns).
#[inline(always)]
fn tokio_clock_may_be_paused() -> bool {
    if MULTI_THREAD_WORKER.with(Cell::get) && tokio::task::try_id().is_some() {
        return false;
    }
    if TOKIO_CLOCK_THREAD.with(Cell::get) {
        return true;
    }
    may_be_paused_uncached()
}

#[inline]
fn may_be_paused_uncached() -> bool {
    match Handle::try_current() {
        Ok(handle) => {
            let multi_thread = matches!(handle.runtime_flavor(), RuntimeFlavor::MultiThread);
            if multi_thread && tokio::task::try_id().is_some() {
                MULTI_THREAD_WORKER.with(|w| w.set(true));
            }
            if !multi_thread {
                TOKIO_CLOCK_THREAD.with(|t| t.set(true));
            }
            !multi_thread
        }
        Err(_) => false,
    }
}

/// A duration in ticks (nanoseconds), saturating (without `u128` arithmetic:
/// this runs on every call).
pub(crate) fn duration_ticks(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

#[cfg(test)]
mod tests {
    //! These tests spin on real time where they check the TSC: the clock under test is the
    //! machine's, which a paused tokio clock does not move. The paused cases use paused time.
    use super::*;

    /// A `current_thread` runtime whose clock starts paused.
    fn paused_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    /// Spins (no sleep) until `d` of real time has passed.
    fn spin(d: Duration) {
        let start = std::time::Instant::now();
        while start.elapsed() < d {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn tsc_ticks_follow_the_monotonic_clock() {
        let clock = Clock::new();
        let start = std::time::Instant::now();
        let t0 = clock.tsc_ticks();
        spin(Duration::from_millis(20));
        let t1 = clock.tsc_ticks();
        let real = duration_ticks(start.elapsed());
        // Tick 0 is the tokio base, taken just before `start`.
        assert!(t0 < 5_000_000, "t0 = {t0}");
        let elapsed = t1 - t0;
        assert!(
            elapsed.abs_diff(real) < 2_000_000,
            "tsc {elapsed} ns vs monotonic {real} ns"
        );
        // Outside any runtime the TSC clock is the one read.
        assert!(!tokio_clock_may_be_paused());
        let t2 = clock.now_ticks();
        assert!(t2 >= t1 && t2.abs_diff(clock.tokio_ticks()) < 2_000_000);
    }

    #[test]
    fn now_reads_the_tsc_outside_a_runtime_and_the_paused_clock_inside() {
        let clock = Clock::new();
        let (before, tsc, after) = (Instant::now(), clock.now(), Instant::now());
        // Within quanta's calibration error of the monotonic clock.
        assert!(
            tsc + Duration::from_millis(2) >= before && tsc <= after + Duration::from_millis(2)
        );
        let rt = paused_runtime();
        rt.block_on(async {
            let start = clock.now();
            spin(Duration::from_millis(2));
            assert_eq!(clock.now(), start); // paused: no real time passes
            tokio::time::advance(Duration::from_secs(60)).await;
            assert_eq!(clock.now(), start + Duration::from_secs(60));
        });
    }

    #[test]
    fn tsc_now_reanchors_to_the_monotonic_clock() {
        let clock = Clock::new();
        let first = clock.tsc_now();
        let (at, anchored) = TSC_ANCHOR
            .with(Cell::get)
            .expect("anchored by the first read");
        // A skewed anchor (1 ms off) is used while it is fresh...
        TSC_ANCHOR.with(|a| a.set(Some((at, anchored + Duration::from_millis(1)))));
        let skewed = clock.tsc_now();
        assert!(skewed >= first + Duration::from_millis(1));
        // ...and replaced by a fresh pairing once it is 50 ms old.
        spin(Duration::from_millis(60));
        let before = Instant::now();
        let fresh = clock.tsc_now();
        let after = Instant::now();
        assert!(
            before <= fresh && fresh <= after,
            "re-anchored: read the monotonic clock"
        );
        let (_, renewed) = TSC_ANCHOR.with(Cell::get).unwrap();
        assert!(renewed > anchored + Duration::from_millis(50));
    }

    #[test]
    fn a_later_cooldown_lands_on_the_same_timeline() {
        let first = Clock::new();
        spin(Duration::from_millis(5));
        let second = Clock::new();
        assert!(second.tsc_offset < 0);
        let (a, b) = (first.tsc_ticks(), second.tsc_ticks());
        // `second` started about 5 ms after `first`.
        let gap = a - b;
        assert!(
            (4_000_000..50_000_000).contains(&gap),
            "gap between the two bases: {gap} ns"
        );
    }

    #[test]
    fn current_thread_runtime_reads_tokio_clock_paused() {
        let rt = paused_runtime();
        rt.block_on(async {
            let clock = Clock::new();
            assert!(tokio_clock_may_be_paused());
            spin(Duration::from_millis(2));
            assert_eq!(clock.now_ticks(), 0); // paused: no real time passes
            tokio::time::advance(Duration::from_secs(3600)).await;
            assert_eq!(clock.now_ticks(), 3_600_000_000_000);
        });
    }

    #[test]
    fn a_thread_that_ran_a_pausable_runtime_keeps_reading_tokio_clock() {
        assert!(!tokio_clock_may_be_paused());
        let rt = paused_runtime();
        rt.block_on(async {
            assert!(tokio_clock_may_be_paused());
            assert!(TOKIO_CLOCK_THREAD.with(Cell::get));
            let clock = Clock::new();
            tokio::time::advance(Duration::from_secs(60)).await;
            // Answered from the cache, and still the paused time.
            assert_eq!(clock.now_ticks(), 60_000_000_000);
        });
        drop(rt);
        // No runtime any more: tokio's clock is the monotonic clock, still
        // a right answer.
        assert!(tokio_clock_may_be_paused());
        let clock = Clock::new();
        spin(Duration::from_millis(2));
        assert!(clock.now_ticks() >= 2_000_000);
    }

    #[test]
    fn multi_thread_runtime_reads_tsc() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(!tokio_clock_may_be_paused());
            let on_worker = tokio::spawn(async {
                let first = tokio_clock_may_be_paused();
                // The second answer comes from the worker's cache.
                assert!(MULTI_THREAD_WORKER.with(Cell::get));
                (first, tokio_clock_may_be_paused())
            })
            .await
            .unwrap();
            assert_eq!(on_worker, (false, false));
            // `block_on`'s own future is no task: this thread is not marked.
            assert!(!MULTI_THREAD_WORKER.with(Cell::get));
        });
        // A paused `current_thread` runtime on the same (unmarked) thread still
        // reads tokio's clock, in `block_on` and in its tasks.
        let paused = paused_runtime();
        paused.block_on(async {
            assert!(tokio_clock_may_be_paused());
            let in_task = tokio::spawn(async { tokio_clock_may_be_paused() })
                .await
                .unwrap();
            assert!(in_task);
        });
    }
}
