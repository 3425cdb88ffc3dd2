//! The Seawall reference bot and small per-crate demos.
