//! `seawall-keyed-lock`: work in progress, see the workspace issue tracker.
