//! `seawall-fallback-sink`: work in progress, see the workspace issue tracker.
