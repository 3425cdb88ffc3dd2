//! The fleet: the reference bot as replicas on Redis and PostgreSQL.
//!
//! `bot --redis URL --postgres URL --replica ID` runs one replica ([`replica::run`]); the
//! `fleet` binary (`bash .ci/fleet`) runs three of them through a scripted set of failures and
//! checks the outcome by SQL.

pub mod pg;
pub mod replica;
pub mod sql;
