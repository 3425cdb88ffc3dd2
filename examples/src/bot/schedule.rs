//! The scripted scenario: its phases, and when each synthetic message arrives.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// What the scenario does to the dependencies during a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Everything works.
    None,
    /// One model of the upstream ([`MODEL_DOWN_FIRST`]) fails most calls; the others serve.
    ModelErrors,
    /// The upstream fails most calls.
    UpstreamErrors,
    /// The upstream answers slower than the per-attempt timeout.
    UpstreamSlow,
    /// The audit store refuses writes.
    AuditDown,
}

/// One phase of the scenario.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phase {
    pub(crate) name: &'static str,
    pub(crate) fault: Fault,
    /// Length at time scale 1.
    pub(crate) base: Duration,
}

/// The model whose outage starts first, during [`Fault::ModelErrors`].
pub(crate) const MODEL_DOWN_FIRST: &str = "model-a";

/// The phases in order. Messages arrive during all of them; the drain follows.
pub(crate) const PHASES: [Phase; 6] = [
    Phase {
        name: "normal traffic",
        fault: Fault::None,
        base: Duration::from_millis(2200),
    },
    Phase {
        name: "upstream outage: model-a errors",
        fault: Fault::ModelErrors,
        base: Duration::from_millis(800),
    },
    Phase {
        name: "upstream outage: errors",
        fault: Fault::UpstreamErrors,
        base: Duration::from_millis(3000),
    },
    Phase {
        name: "upstream outage: slow answers",
        fault: Fault::UpstreamSlow,
        base: Duration::from_millis(2000),
    },
    Phase {
        name: "upstream recovered",
        fault: Fault::None,
        base: Duration::from_millis(2000),
    },
    Phase {
        name: "audit store outage",
        fault: Fault::AuditDown,
        base: Duration::from_millis(4000),
    },
];

/// Scales a base duration by the run's time scale.
pub(crate) fn scaled(base: Duration, scale: f64) -> Duration {
    Duration::from_secs_f64(base.as_secs_f64() * scale)
}

/// The total length of the phases at time scale 1.
pub(crate) fn total_base() -> Duration {
    PHASES.iter().map(|p| p.base).sum()
}

/// One synthetic message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arrival {
    /// When it arrives, from the start of the run, at time scale 1.
    pub(crate) at: Duration,
    pub(crate) user: u32,
    /// Its position in the user's stream, from 0.
    pub(crate) seq: u32,
}

/// Every message of every user, sorted by arrival. Each user's messages come in bursts of 2 to 5
/// a few milliseconds apart, so a user often has several messages in flight at once.
pub(crate) fn arrivals(users: u32, messages: u32, seed: u64) -> Vec<Arrival> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let span = total_base().as_millis() as u64;
    let mut out = Vec::with_capacity(users as usize * messages as usize);
    for user in 0..users {
        let mut seq = 0;
        let mut bursts = Vec::new();
        while seq < messages {
            let size = rng.random_range(2..=5).min(messages - seq);
            bursts.push((rng.random_range(0..span.max(1)), size));
            seq += size;
        }
        bursts.sort_unstable();
        let mut seq = 0;
        let mut last = 0u64;
        for (start, size) in bursts {
            let mut at = start.max(last);
            for _ in 0..size {
                out.push(Arrival {
                    at: Duration::from_millis(at),
                    user,
                    seq,
                });
                seq += 1;
                at += rng.random_range(1..8);
            }
            last = at;
        }
    }
    out.sort_by_key(|a| (a.at, a.user, a.seq));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_once_in_user_order() {
        let all = arrivals(7, 13, 1);
        assert_eq!(all.len(), 7 * 13);
        for user in 0..7 {
            let seqs: Vec<u32> = all
                .iter()
                .filter(|a| a.user == user)
                .map(|a| a.seq)
                .collect();
            assert_eq!(seqs, (0..13).collect::<Vec<_>>());
        }
        assert!(all.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn same_seed_same_schedule() {
        assert_eq!(arrivals(5, 9, 3), arrivals(5, 9, 3));
        assert_ne!(arrivals(5, 9, 3), arrivals(5, 9, 4));
    }

    #[test]
    fn bursts_put_messages_close_together() {
        let all = arrivals(10, 20, 9);
        let close = (0..10)
            .map(|u| {
                let times: Vec<_> = all.iter().filter(|a| a.user == u).map(|a| a.at).collect();
                times
                    .windows(2)
                    .filter(|w| w[1] - w[0] < Duration::from_millis(10))
                    .count()
            })
            .sum::<usize>();
        // 10 users x 19 gaps; bursts of 2..=5 leave at least half the gaps inside a burst.
        assert!(close >= 95, "only {close} close gaps");
    }
}
