//! The store's side of the hot cells (`crate::hot`): installing a cell,
//! folding it back into its key's record, and counting through it.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Entry, Inner, Shard, Table};
use crate::hot::{HotCell, HotWord};
use crate::state::RawSuppressed;

impl<K: Hash + Eq + Clone, P> Inner<K, P> {
    /// Folds the shard's hot cell if it is `key`'s. Called with the shard's
    /// lock held. Out of line, like the other hot-cell work on the locked
    /// path: a call with no cell around pays one load and one branch.
    #[cold]
    #[inline(never)]
    pub(super) fn fold_hot_of<Q>(
        &self,
        shard: &Shard<K, P>,
        table: &mut Table<K, P>,
        key: &Q,
        hash: u64,
    ) where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let same = shard
            .hot
            .load()
            .as_ref()
            .is_some_and(|c| c.hash == hash && c.key.borrow() == key);
        if same {
            self.fold_hot(shard, table);
        }
    }

    /// Installs a hot cell for `entry`'s key if the shard has none and the
    /// record may be frozen (window open, pending count, no send in flight).
    /// Called with the shard's lock held.
    #[cold]
    #[inline(never)]
    pub(super) fn install_hot(&self, shard: &Shard<K, P>, entry: &Entry<K, P>, now: u64) {
        if shard.has_hot.load(Ordering::Relaxed) {
            return;
        }
        let Some(end) = entry.state.hot_window_end(now, self.window_ticks) else {
            return;
        };
        shard.hot.store(Some(Arc::new(HotCell {
            key: entry.key.clone(),
            hash: self.hasher.hash_one(&entry.key),
            end,
            base: entry.state.pending_count(),
            word: HotWord::new(now),
        })));
        shard.has_hot.store(true, Ordering::Relaxed);
    }

    /// Folds the shard's hot cell into its key's record and uninstalls it
    /// (`crate::hot`). Called with the shard's lock held.
    pub(super) fn fold_hot(&self, shard: &Shard<K, P>, table: &mut Table<K, P>) {
        if !shard.has_hot.load(Ordering::Relaxed) {
            return;
        }
        shard.has_hot.store(false, Ordering::Relaxed);
        let Some(cell) = shard.hot.swap(None) else {
            return;
        };
        let (count, latest) = cell.word.close();
        let Some(latest) = latest else {
            return;
        };
        match table.entries.find_mut(cell.hash, |e| e.key == cell.key) {
            Some(entry) => entry.state.absorb_hot(count, latest),
            // Every removal folds first, so this is a bug; say so rather than panic.
            None => tracing::error!(
                cooldown = %self.name,
                lost_suppressed = count,
                "cooldown hot cell outlived its key's record; its count is lost"
            ),
        }
    }

    /// A suppression counted in the key's hot cell, if the shard has one for
    /// this key and it can count at `now`. Out of line, so that a check with
    /// no cell around pays one load and one branch for it.
    #[inline(never)]
    pub(super) fn hot_suppress<Q>(
        &self,
        shard: &Shard<K, P>,
        key: &Q,
        hash: u64,
        now: u64,
    ) -> Option<RawSuppressed>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let guard = shard.hot.load();
        let cell = guard.as_ref()?;
        if cell.hash != hash || cell.key.borrow() != key || now >= cell.end {
            return None;
        }
        let counted = cell.word.suppress(now)?;
        Some(RawSuppressed {
            remaining: cell.end - now,
            suppressed: cell.base.saturating_add(counted),
        })
    }
}
