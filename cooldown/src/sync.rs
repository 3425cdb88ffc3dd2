//! The atomics of the hot cells' counting word: `std`'s, or `loom`'s when the
//! crate is built with `--cfg loom`, so that the loom model in `src/hot.rs`
//! checks the real code.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
