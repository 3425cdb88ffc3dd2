//! The half-open probe slots: which probes are alive, and when each one counts as hung.

/// One live probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Probe {
    pub(crate) id: u32,
    /// The generation of the half-open period it was granted in.
    pub(crate) generation: u32,
    /// Nanoseconds on the breaker's clock after which it counts as failed.
    pub(crate) deadline: u64,
}

/// Every live probe, of the current half-open period or an earlier one, so that probes never
/// overlap beyond the configured limit. Never longer than that limit: a probe is added only
/// while fewer are alive.
#[derive(Debug, Default)]
pub(crate) struct ProbeSlots {
    live: Vec<Probe>,
    next_id: u32,
}

impl ProbeSlots {
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// Takes a slot; returns the new probe's id.
    pub(crate) fn grant(&mut self, generation: u32, deadline: u64) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.live.push(Probe {
            id,
            generation,
            deadline,
        });
        id
    }

    /// Frees probe `id`'s slot; `None` if it no longer holds one (it was counted as hung).
    pub(crate) fn release(&mut self, id: u32) -> Option<Probe> {
        let i = self.live.iter().position(|p| p.id == id)?;
        Some(self.live.swap_remove(i))
    }

    /// Frees the slots of the probes whose deadline is at or before `now`; returns the one
    /// with the earliest deadline among those of `generation`, if any.
    pub(crate) fn expire(&mut self, now: u64, generation: u32) -> Option<Probe> {
        let mut first: Option<Probe> = None;
        self.live.retain(|p| {
            if p.deadline > now {
                return true;
            }
            if p.generation == generation && first.is_none_or(|f| p.deadline < f.deadline) {
                first = Some(*p);
            }
            false
        });
        first
    }

    /// The earliest deadline of a live probe, `u64::MAX` if none.
    pub(crate) fn next_deadline(&self) -> u64 {
        self.live
            .iter()
            .map(|p| p.deadline)
            .min()
            .unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_release_expire() {
        let mut s = ProbeSlots::default();
        let a = s.grant(1, 100);
        let b = s.grant(1, 50);
        let c = s.grant(0, 10);
        assert_eq!(s.len(), 3);
        assert_eq!(s.next_deadline(), 10);
        // c is of an earlier period: freed, not reported.
        assert_eq!(s.expire(20, 1), None);
        assert_eq!(s.len(), 2);
        assert_eq!(s.expire(60, 1).map(|p| p.id), Some(b));
        assert_eq!(s.release(b), None);
        assert_eq!(s.release(a).map(|p| p.deadline), Some(100));
        assert_eq!(s.len(), 0);
        assert_eq!(s.next_deadline(), u64::MAX);
        let _ = c;
    }
}
