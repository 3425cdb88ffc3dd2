//! `seawall-cooldown`: work in progress, see the workspace issue tracker.
