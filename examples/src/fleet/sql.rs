//! The fleet's PostgreSQL schema and statements, one place for every SQL string.
//!
//! Every table lives in one schema per run (`--schema`), so the scenario and the throughput
//! runs share a server without sharing rows.

/// The SQL of one schema.
#[derive(Debug, Clone)]
pub struct Sql {
    schema: String,
}

impl Sql {
    /// The statements for `schema` (letters, digits and `_` only: it is spliced into SQL).
    pub fn new(schema: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !schema.is_empty()
                && schema.len() <= 48
                && schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "schema must be 1 to 48 of [a-z0-9_], got {schema:?}"
        );
        Ok(Sql {
            schema: schema.to_string(),
        })
    }

    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Drops and creates the schema with every table, empty.
    pub fn create(&self) -> String {
        let s = &self.schema;
        format!(
            "DROP SCHEMA IF EXISTS {s} CASCADE;
             CREATE SCHEMA {s};
             -- The messages, as the driver delivers them.
             CREATE TABLE {s}.inbox (
                 user_id    integer NOT NULL,
                 seq        integer NOT NULL,
                 body       text NOT NULL,
                 arrived_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                 PRIMARY KEY (user_id, seq));
             -- Per user: the next message to handle and the fencing token of the last write.
             CREATE TABLE {s}.conversations (
                 user_id    integer PRIMARY KEY,
                 next_seq   integer NOT NULL DEFAULT 0,
                 token      bigint NOT NULL DEFAULT 0,
                 replica    text,
                 updated_at timestamptz);
             -- One row per fenced write that went through. No unique key on purpose: the
             -- fence is what keeps a message from being handled twice, and the checks look.
             CREATE TABLE {s}.handled (
                 id         bigserial PRIMARY KEY,
                 user_id    integer NOT NULL,
                 seq        integer NOT NULL,
                 token      bigint NOT NULL,
                 replica    text NOT NULL,
                 outcome    text NOT NULL,
                 detail     text NOT NULL,
                 handled_at timestamptz NOT NULL DEFAULT clock_timestamp());
             CREATE INDEX ON {s}.handled (user_id, seq);
             -- Writes the fence turned away (recorded after the fact, by the stale holder).
             CREATE TABLE {s}.fenced (
                 id       bigserial PRIMARY KEY,
                 user_id  integer NOT NULL,
                 seq      integer NOT NULL,
                 token    bigint NOT NULL,
                 replica  text NOT NULL,
                 at       timestamptz NOT NULL DEFAULT clock_timestamp());
             -- The audit log, idempotent by an id derived from the message and the kind.
             CREATE TABLE {s}.audit (
                 event_id  text PRIMARY KEY,
                 user_id   integer NOT NULL,
                 seq       integer NOT NULL,
                 kind      text NOT NULL,
                 token     bigint NOT NULL,
                 replica   text NOT NULL,
                 detail    text NOT NULL,
                 stored_at timestamptz NOT NULL DEFAULT clock_timestamp());
             -- Alerts that reached a person (the cooldown said fire).
             CREATE TABLE {s}.alerts (
                 id                bigserial PRIMARY KEY,
                 key               text NOT NULL,
                 replica           text NOT NULL,
                 fired_at_ms       bigint NOT NULL,
                 degraded          boolean NOT NULL,
                 suppressed_before bigint NOT NULL,
                 message           text NOT NULL);
             -- What each replica process said about itself when it stopped.
             CREATE TABLE {s}.replica_runs (
                 replica     text NOT NULL,
                 pid         integer NOT NULL,
                 handled     bigint NOT NULL,
                 fenced      bigint NOT NULL,
                 lease_lost  bigint NOT NULL,
                 spooled     bigint NOT NULL,
                 replayed    bigint NOT NULL,
                 inherited   bigint NOT NULL,
                 fired       bigint NOT NULL,
                 suppressed  bigint NOT NULL,
                 pg_errors   bigint NOT NULL,
                 redis_errors bigint NOT NULL,
                 spool_left  bigint NOT NULL,
                 stopped_at  timestamptz NOT NULL DEFAULT clock_timestamp());"
        )
    }

    /// `$1` users: one conversation row each, at sequence 0.
    pub fn add_users(&self) -> String {
        format!(
            "INSERT INTO {}.conversations (user_id) SELECT generate_series(0, $1::int - 1)",
            self.schema
        )
    }

    /// `$1` user, `$2` seq, `$3` body.
    pub fn deliver(&self) -> String {
        format!(
            "INSERT INTO {}.inbox (user_id, seq, body) VALUES ($1, $2, $3)",
            self.schema
        )
    }

    /// Up to `$1` users with a message waiting, in random order (any replica takes any user).
    pub fn waiting_users(&self) -> String {
        let s = &self.schema;
        format!(
            "SELECT c.user_id FROM {s}.conversations c
              WHERE EXISTS (SELECT 1 FROM {s}.inbox i
                             WHERE i.user_id = c.user_id AND i.seq = c.next_seq)
              ORDER BY random() LIMIT $1"
        )
    }

    /// `$1` user: its next message (seq, body) and the last handled one's (outcome, detail,
    /// token, replica), if any.
    pub fn next_message(&self) -> String {
        let s = &self.schema;
        format!(
            "SELECT c.next_seq, i.body, h.outcome, h.detail, h.token, h.replica
               FROM {s}.conversations c
               JOIN {s}.inbox i ON i.user_id = c.user_id AND i.seq = c.next_seq
               LEFT JOIN LATERAL (SELECT outcome, detail, token, replica FROM {s}.handled
                                   WHERE user_id = c.user_id AND seq = c.next_seq - 1
                                   ORDER BY id LIMIT 1) h ON true
              WHERE c.user_id = $1"
        )
    }

    /// The fenced write, in one statement: advance user `$1`'s conversation past message `$2`
    /// and record its outcome, only if `$2` is the next message and the lease's token `$3` is
    /// not lower than the token of the last write. `$4` replica, `$5` outcome, `$6` detail.
    /// Changes 1 row, or 0 when the write is fenced off (a stale holder, or a message already
    /// handled by someone else).
    pub fn fenced_advance(&self) -> String {
        let s = &self.schema;
        format!(
            "WITH advanced AS (
                 UPDATE {s}.conversations
                    SET next_seq = next_seq + 1, token = $3, replica = $4,
                        updated_at = clock_timestamp()
                  WHERE user_id = $1 AND next_seq = $2 AND token <= $3
              RETURNING user_id)
             INSERT INTO {s}.handled (user_id, seq, token, replica, outcome, detail)
             SELECT $1, $2, $3, $4, $5, $6 FROM advanced"
        )
    }

    /// `$1` user, `$2` seq, `$3` token, `$4` replica: a write the fence turned away.
    pub fn record_fenced(&self) -> String {
        format!(
            "INSERT INTO {}.fenced (user_id, seq, token, replica) VALUES ($1, $2, $3, $4)",
            self.schema
        )
    }

    /// A batch of audit events as parallel arrays; an event id already stored is skipped.
    pub fn insert_audit(&self) -> String {
        format!(
            "INSERT INTO {}.audit (event_id, user_id, seq, kind, token, replica, detail)
             SELECT * FROM UNNEST($1::text[], $2::int[], $3::int[], $4::text[], $5::bigint[],
                                  $6::text[], $7::text[])
             ON CONFLICT (event_id) DO NOTHING",
            self.schema
        )
    }

    /// `$1` key, `$2` replica, `$3` fired at (ms since the epoch), `$4` degraded,
    /// `$5` suppressed before it, `$6` message.
    pub fn record_alert(&self) -> String {
        format!(
            "INSERT INTO {}.alerts (key, replica, fired_at_ms, degraded, suppressed_before, message)
             VALUES ($1, $2, $3, $4, $5, $6)",
            self.schema
        )
    }

    /// A replica's own figures when it stops, `$1` to `$13` in column order.
    pub fn record_run(&self) -> String {
        format!(
            "INSERT INTO {}.replica_runs (replica, pid, handled, fenced, lease_lost, spooled,
                 replayed, inherited, fired, suppressed, pg_errors, redis_errors, spool_left)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            self.schema
        )
    }
}

/// The id of the audit event of `kind` for message `seq` of `user`: the same however many
/// times, and by whichever replica, the message is handled.
pub fn event_id(user: u32, seq: u32, kind: &str) -> String {
    format!("u{user}-m{seq}-{kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_that_could_inject_sql_are_refused() {
        assert!(Sql::new("fleet_main").is_ok());
        for bad in ["", "a;DROP TABLE x", "Fleet", "a b", "a.b", &"x".repeat(49)] {
            assert!(Sql::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_fenced_write_is_one_statement_guarded_by_sequence_and_token() {
        let sql = Sql::new("s").unwrap().fenced_advance();
        assert_eq!(sql.matches(';').count(), 0, "{sql}");
        assert!(
            sql.contains("WHERE user_id = $1 AND next_seq = $2 AND token <= $3"),
            "{sql}"
        );
        assert!(sql.contains("FROM advanced"), "{sql}");
    }

    #[test]
    fn event_ids_depend_on_message_and_kind_only() {
        assert_eq!(event_id(3, 7, "received"), "u3-m7-received");
        assert_ne!(event_id(3, 7, "received"), event_id(3, 7, "outcome"));
        assert_ne!(event_id(3, 7, "outcome"), event_id(37, 7, "outcome"));
    }
}
