//! The Redis backend (feature `redis`): the cooldown's state in Redis,
//! shared by every replica. See the crate docs, "Redis backend".
//!
//! Where things are: `cooldown.rs` (the public [`RedisCooldown`] and its
//! methods), `builder.rs`, `reservation.rs`, `policy.rs`, `error.rs`,
//! `inner.rs` (the shared state and its script calls), `reply.rs` (reply and
//! server-clock decoding), `scripts.rs` (the Lua), `client.rs` (the
//! transport, byte-identical in seawall-keyed-lock).

mod builder;
mod client;
mod cooldown;
mod error;
mod inner;
mod policy;
mod reply;
mod reservation;
mod scripts;

pub use builder::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_PREFIX, DEFAULT_RESERVATION_TIMEOUT, MAX_REDIS_DURATION,
    MIN_DEFAULT_RETENTION, MIN_RETENTION, RedisCooldownBuilder,
};
pub use cooldown::RedisCooldown;
pub use error::RedisCooldownError;
pub use policy::UnreachablePolicy;
pub use reservation::RedisReservation;
