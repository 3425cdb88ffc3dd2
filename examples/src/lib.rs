//! The Seawall reference bot, and the library behind it.
//!
//! The `bot` binary (`cargo run --release -p seawall-examples --bin bot`) runs a chat bot
//! service that composes all five Seawall crates and drives it through a scripted outage; see
//! [`bot::run`] and `bot --help`. The other binaries in `src/bin/` are small per-crate demos.

pub mod bot;
