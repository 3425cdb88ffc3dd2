//! The packed state word and the token a permit carries.
//!
//! One `u64`: bits 0..3 the state code, bit 3 [`GENERAL`] (fixed for the breaker's life),
//! bits 4..32 a generation that changes on every transition, bits 32..64 the
//! consecutive-failure count while closed. A permit's token keeps the word it was granted
//! under with the failure bits replaced by the probe's id (a half-open probe) or zero.
//!
//! The lock-free closed path of the consecutive-failure policy is the word's low bits all
//! zero (state `Closed`, no [`GENERAL`] bit): one test on the loaded word when a permit is
//! granted, one on the token when its verdict comes.

use crate::State;

pub(crate) const STATE_MASK: u64 = 0b111;
/// Set in every word of a breaker whose closed-state permits or verdicts need more than the
/// word (a rate window, slow calls): they take the general path.
pub(crate) const GENERAL: u64 = 1 << 3;
/// The bits that are all zero on the lock-free closed path.
pub(crate) const FAST_MASK: u64 = STATE_MASK | GENERAL;
const GEN_SHIFT: u32 = 4;
pub(crate) const GEN_MASK: u32 = (1 << 28) - 1;
const FAIL_SHIFT: u32 = 32;
const LOW_MASK: u64 = (1 << FAIL_SHIFT) - 1;

/// The word of `state`, `generation` and `fails`, with the `flags` ([`GENERAL`] or 0).
#[inline]
pub(crate) const fn pack(state: State, generation: u32, fails: u32, flags: u64) -> u64 {
    state.code()
        | (flags & GENERAL)
        | (((generation & GEN_MASK) as u64) << GEN_SHIFT)
        | ((fails as u64) << FAIL_SHIFT)
}

#[inline]
pub(crate) const fn state_of(word: u64) -> State {
    State::from_code(word & STATE_MASK)
}

#[inline]
pub(crate) const fn gen_of(word: u64) -> u32 {
    ((word >> GEN_SHIFT) as u32) & GEN_MASK
}

#[inline]
pub(crate) const fn fails_of(word: u64) -> u32 {
    (word >> FAIL_SHIFT) as u32
}

#[inline]
pub(crate) const fn with_fails(word: u64, fails: u32) -> u64 {
    (word & LOW_MASK) | ((fails as u64) << FAIL_SHIFT)
}

/// What a permit remembers about its acquisition: the state word it was granted under (its
/// state and generation; for a probe, its id in the high bits) and, when slow calls are
/// tracked, its start in nanoseconds on the breaker's clock. Two plain words, so the hot path
/// copies no niche-encoded `Option<Instant>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    word: u64,
    pub(crate) start: u64,
}

/// `Token::start` when slow calls are not tracked.
pub(crate) const NO_START: u64 = u64::MAX;

impl Token {
    /// The token of a permit that already has its verdict.
    pub(crate) const SPENT: Token = Token {
        word: u64::MAX,
        start: NO_START,
    };

    /// A closed-state or disabled-state token.
    #[inline]
    pub(crate) const fn new(word: u64, start: u64) -> Token {
        Token {
            word: word & LOW_MASK,
            start,
        }
    }

    /// A half-open probe's token, carrying the probe's id.
    #[inline]
    pub(crate) const fn probe(word: u64, id: u32, start: u64) -> Token {
        Token {
            word: with_fails(word, id),
            start,
        }
    }

    /// The state the permit was granted in: `Closed`, `HalfOpen` (a probe) or `Disabled`.
    #[inline]
    pub(crate) const fn state(self) -> State {
        state_of(self.word)
    }

    #[inline]
    pub(crate) const fn generation(self) -> u32 {
        gen_of(self.word)
    }

    /// A probe's id (see [`Token::probe`]).
    #[inline]
    pub(crate) const fn probe_id(self) -> u32 {
        fails_of(self.word)
    }

    /// Granted closed on the lock-free path: its verdict needs only the word.
    #[inline]
    pub(crate) const fn is_fast(self) -> bool {
        self.word & FAST_MASK == 0
    }

    #[inline]
    pub(crate) const fn is_spent(self) -> bool {
        self.word == u64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_packing_round_trips() {
        for state in State::ALL {
            let w = pack(state, GEN_MASK, u32::MAX, GENERAL);
            assert_eq!(state_of(w), state);
            assert_eq!(w & GENERAL, GENERAL);
            assert_eq!(gen_of(w), GEN_MASK);
            assert_eq!(fails_of(w), u32::MAX);
            let w = with_fails(w, 7);
            assert_eq!((state_of(w), gen_of(w), fails_of(w)), (state, GEN_MASK, 7));
        }
        // The generation wraps inside its bits without touching the others.
        let w = pack(State::HalfOpen, GEN_MASK.wrapping_add(1), 3, 0);
        assert_eq!(w & GENERAL, 0);
        assert_eq!(
            (state_of(w), gen_of(w), fails_of(w)),
            (State::HalfOpen, 0, 3)
        );
    }

    #[test]
    fn tokens_keep_state_generation_and_probe_id() {
        let w = pack(State::HalfOpen, 41, 9, 0);
        let t = Token::probe(w, 1234, 5);
        assert_eq!(
            (t.state(), t.generation(), t.probe_id()),
            (State::HalfOpen, 41, 1234)
        );
        let t = Token::new(pack(State::Closed, 7, 3, 0), NO_START);
        assert_eq!(
            (t.state(), t.generation(), t.probe_id()),
            (State::Closed, 7, 0)
        );
        assert!(t.is_fast());
        let g = Token::new(pack(State::Closed, 7, 3, GENERAL), NO_START);
        assert!(!g.is_fast() && g.generation() == 7 && g.state() == State::Closed);
        assert!(!Token::probe(pack(State::HalfOpen, 7, 0, 0), 1, NO_START).is_fast());
        assert!(!t.is_spent() && Token::SPENT.is_spent());
    }
}
