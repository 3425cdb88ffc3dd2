//! Hot cells: one key's suppressions counted without its shard's lock while
//! the key's window is open.
//!
//! Under an alert storm the same key is checked by several threads at once,
//! and every check used to take the key's shard mutex: with two threads that
//! mutex was contended on every call and parked one of them (issue 14: about
//! 2.5x governor's time on one key from two threads). A shard therefore keeps
//! at most one *hot cell*: the key, the end of its window, the key's pending
//! count when the cell was installed (`base`), an atomic count of the
//! suppressions made through the cell, and per-thread slots for the latest
//! one's tick (see [`HotWord`]). A plain [`Cooldown::check`](crate::Cooldown::check) of that key
//! inside the window is then one `fetch_add` on the count, which returns the
//! exact `suppressed` number (`base` + the cell's count), with no lock.
//!
//! The rules that keep every count exact (`crate::store` follows them):
//! - A cell is installed only under the shard's lock, by a plain check that
//!   was suppressed inside the key's window, found the lock contended, left
//!   the record with a pending count (so `base` >= 1 and the record's `first`
//!   is already set) and no reservation in flight.
//! - While a cell is installed, the key's record is frozen: every locked
//!   visit to the key (any check, a reservation, commit, rollback) and every
//!   sweep, drain or eviction first *folds* the cell: it takes the cell out of
//!   the shard, closes its count (one `fetch_or` of a closed bit, after which
//!   no suppression counts in it), and adds the cell's count and latest tick
//!   to the record. A check that finds the word closed takes the lock, and so waits
//!   for the fold.
//! - A closed cell is never reopened; the next contended suppression installs
//!   a fresh one. So a thread still holding an old cell can only see it
//!   closed.
//! - A suppression through the cell needs `since <= now < end`: earlier
//!   ticks (a thread that read its clock before the cell existed) and ticks
//!   past the window take the lock.
//! - A plain check that finds the lock free never installs a cell, so an
//!   uncontended caller pays two loads and branches for all of this: the
//!   shard's flag before the lock and again under it.
//!
//! Readers reach the cell through `arc-swap` (no `unsafe` in the workspace);
//! a `Relaxed` flag written under the lock lets a check skip even that when
//! the shard has no cell, which is the uncontended case.

use crate::sync::{AtomicU64, Ordering};

/// Set once the cell is folded: nothing counts in it any more.
const CLOSED: u64 = 1 << 63;
/// Most suppressions one cell counts (2^62, never reached in practice); the
/// next ones take the lock. Far below `CLOSED`, so no number of concurrent
/// increments past it can carry into that bit.
const COUNT_MAX: u64 = 1 << 62;
/// Slots for the latest suppression's tick, one per thread (threads beyond
/// share them).
const SLOTS: usize = 8;

/// The counting part of a hot cell.
///
/// A suppression is one `fetch_add` on the count: `CLOSED`, then the number
/// counted, on a line of its own. A counted suppression then writes its tick
/// into the calling thread's slot and counts itself there as dated (a
/// `fetch_max` and a `fetch_add` on a line no other thread writes, unless
/// more than [`SLOTS`] threads suppress at once). A fold closes the count and
/// waits until the slots' dated counts add up to it: then every counted
/// suppression's tick is in the slots, and only theirs, so the latest tick is
/// exact. A refused suppression writes nothing. The wait is the few
/// instructions between a suppression's count and its dating (longer only if
/// that thread is preempted right there), and nothing between them can fail.
///
/// So the one line the threads share is written once per call, and never
/// retried. Measured on the benchmark's two threads on one key: a
/// compare-exchange loop packing count and latest tick in one word took
/// 131-139 ns per call, the `fetch_add` count 114-121 ns; a second
/// `fetch_add` on the count's line (a shared dated count) 191 ns in one run,
/// because the other thread takes the line back in between (issue 14).
pub(crate) struct HotWord {
    since: u64,
    count: OwnLine,
    slots: [Slot; SLOTS],
}

/// An atomic on cache lines of its own (128 bytes: the pair an x86 core
/// prefetches together), so a write to one does not take the others' line.
#[repr(align(128))]
struct OwnLine(AtomicU64);

/// A thread's latest counted tick and how many of its counted suppressions
/// have written it, on cache lines of their own.
#[repr(align(128))]
struct Slot {
    latest: AtomicU64,
    dated: AtomicU64,
}

/// The calling thread's slot in [`HotWord::latest`]: threads take slots in
/// turn. Slot 0 if the thread's locals are already gone (a check from a
/// thread-local destructor).
#[cfg(not(loom))]
fn thread_slot() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
    }
    SLOT.try_with(|s| *s).unwrap_or(0)
}

/// Under loom: loom's thread locals and counter, which start afresh in each
/// execution, so that model threads take different slots.
#[cfg(loom)]
fn thread_slot() -> usize {
    loom::lazy_static! {
        static ref NEXT: loom::sync::atomic::AtomicUsize = loom::sync::atomic::AtomicUsize::new(0);
    }
    loom::thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
    }
    SLOT.with(|s| *s)
}

/// One turn of the fold's wait for a suppression between its two `fetch_add`s.
fn wait_a_little(turns: u32) {
    #[cfg(loom)]
    {
        let _ = turns;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    if turns < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

impl HotWord {
    /// An open word counting nothing yet, for suppressions from tick `since`.
    pub(crate) fn new(since: u64) -> Self {
        HotWord {
            since,
            count: OwnLine(AtomicU64::new(0)),
            slots: std::array::from_fn(|_| Slot {
                latest: AtomicU64::new(0),
                dated: AtomicU64::new(0),
            }),
        }
    }

    /// Counts one suppression at `now`. Returns how many this cell has
    /// counted, this one included, or `None` if it did not count it: the cell
    /// is closed or full, or `now` is before `since`.
    #[inline]
    pub(crate) fn suppress(&self, now: u64) -> Option<u64> {
        if now < self.since {
            return None;
        }
        // Found before counting, so that nothing between the two `fetch_add`s
        // can fail and leave a fold waiting.
        let slot = &self.slots[thread_slot()];
        let word = self.count.0.fetch_add(1, Ordering::Relaxed);
        if word & CLOSED != 0 || word >= COUNT_MAX {
            return None;
        }
        slot.latest.fetch_max(now, Ordering::Relaxed);
        // Release: a fold that reads this dated count sees this tick.
        slot.dated.fetch_add(1, Ordering::Release);
        Some(word + 1)
    }

    /// Closes the word: no suppression counts in it afterwards. Returns the
    /// number it counted and the tick of the latest, if it counted any.
    /// Called once per cell (by the fold that uninstalled it).
    pub(crate) fn close(&self) -> (u64, Option<u64>) {
        // Increments that found the count at `COUNT_MAX` or more were
        // refused (and counted under the lock): they are not this cell's.
        let count = (self.count.0.fetch_or(CLOSED, Ordering::Relaxed) & !CLOSED).min(COUNT_MAX);
        if count == 0 {
            return (0, None);
        }
        // Only counted suppressions date themselves, each once: the sum
        // reaches `count` exactly when all of them have.
        let mut turns = 0;
        while self
            .slots
            .iter()
            .map(|s| s.dated.load(Ordering::Acquire))
            .fold(0u64, u64::wrapping_add)
            < count
        {
            wait_a_little(turns);
            turns = turns.saturating_add(1);
        }
        let latest = self
            .slots
            .iter()
            .map(|s| s.latest.load(Ordering::Relaxed))
            .max();
        (count, latest)
    }
}

/// One key's suppressions, counted without the shard's lock while its window
/// is open (see the module doc).
pub(crate) struct HotCell<K> {
    pub(crate) key: K,
    pub(crate) hash: u64,
    /// Tick at which the key's window ends.
    pub(crate) end: u64,
    /// The record's pending count when the cell was installed (at least 1).
    pub(crate) base: u64,
    pub(crate) word: HotWord,
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn counts_and_dates_until_closed() {
        let w = HotWord::new(100);
        assert_eq!(w.suppress(99), None, "before the cell existed");
        assert_eq!(w.suppress(150), Some(1));
        assert_eq!(w.suppress(120), Some(2), "an earlier tick still counts");
        assert_eq!(w.close(), (2, Some(150)));
        assert_eq!(w.suppress(160), None, "closed");
    }

    #[test]
    fn an_empty_cell_closes_with_nothing() {
        assert_eq!(HotWord::new(7).close(), (0, None));
    }

    #[test]
    fn a_full_cell_refuses_and_folds_only_what_it_counted() {
        let w = HotWord::new(0);
        w.count.0.store(COUNT_MAX - 1, Ordering::Relaxed);
        w.slots[1].dated.store(COUNT_MAX - 1, Ordering::Relaxed);
        assert_eq!(w.suppress(3), Some(COUNT_MAX));
        assert_eq!(w.suppress(4), None);
        assert_eq!(w.suppress(5), None);
        assert_eq!(w.close().0, COUNT_MAX);
    }

    #[test]
    fn threads_date_in_their_own_slots_and_the_fold_takes_the_latest() {
        let w = HotWord::new(0);
        std::thread::scope(|s| {
            for t in 0..(2 * SLOTS as u64) {
                let w = &w;
                s.spawn(move || assert!(w.suppress(1_000 + t).is_some()));
            }
        });
        assert_eq!(
            w.close(),
            (2 * SLOTS as u64, Some(1_000 + 2 * SLOTS as u64 - 1))
        );
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! The word's protocol under every interleaving loom finds: two threads
    //! suppress while a third closes the word, as a fold does.
    //!
    //! `RUSTFLAGS="--cfg loom" cargo test -p seawall-cooldown --lib --release loom`

    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    #[test]
    fn every_counted_suppression_is_folded_once_and_none_after_close() {
        loom::model(|| {
            let word = Arc::new(HotWord::new(10));
            let suppressors: Vec<_> = [12u64, 15]
                .into_iter()
                .map(|now| {
                    let word = word.clone();
                    thread::spawn(move || {
                        let a = word.suppress(now);
                        let b = word.suppress(now + 1);
                        (now, a, b)
                    })
                })
                .collect();
            let (folded, latest) = word.close();
            let mut numbers = Vec::new();
            let mut latest_counted = None;
            for t in suppressors {
                let (now, a, b) = t.join().unwrap();
                // A thread's later suppression never counts when its
                // earlier one was refused: the word does not reopen.
                assert!(!(a.is_none() && b.is_some()));
                for (n, at) in [(a, now), (b, now + 1)] {
                    if let Some(n) = n {
                        numbers.push(n);
                        latest_counted = latest_counted.max(Some(at));
                    }
                }
            }
            // Exactly the suppressions counted before the close are folded,
            // each with its own number, and the fold dates the latest of
            // them, never a refused one.
            numbers.sort_unstable();
            let expected: Vec<u64> = (1..=folded).collect();
            assert_eq!(numbers, expected);
            assert_eq!(latest, latest_counted);
            // After the close nothing counts.
            assert_eq!(word.suppress(20), None);
        });
    }
}
