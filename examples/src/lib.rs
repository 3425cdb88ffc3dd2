//! The Seawall reference bot, and the library behind it.
//!
//! The `bot` binary (`cargo run --release -p seawall-examples --bin bot`) runs a chat bot
//! service that composes all five Seawall crates and drives it through a scripted outage; see
//! [`bot::run`] and `bot --help`. With `--redis`, `--postgres` and `--replica` the same binary
//! runs as one replica of the [`fleet`]. The other binaries in `src/bin/` are small per-crate demos.

pub mod bot;
pub mod fleet;
