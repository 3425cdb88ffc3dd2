//! `seawall-circuit-breaker`: work in progress, see the workspace issue tracker.
