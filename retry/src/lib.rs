//! `seawall-retry`: work in progress, see the workspace issue tracker.
