//! The Redis backend (feature `redis`): the cooldown's state in Redis,
//! shared by every replica. See the crate docs, "Redis backend".

mod builder;
mod conn;
mod cooldown;
mod error;
mod policy;
mod reservation;
mod scripts;

pub use builder::{
    DEFAULT_PREFIX, DEFAULT_RESERVATION_TIMEOUT, DEFAULT_TIMEOUT, MAX_REDIS_DURATION,
    MIN_DEFAULT_RETENTION, MIN_RETENTION, RedisCooldownBuilder,
};
pub use cooldown::RedisCooldown;
pub use error::RedisCooldownError;
pub use policy::UnreachablePolicy;
pub use reservation::RedisReservation;
