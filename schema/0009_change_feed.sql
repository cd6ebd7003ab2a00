-- 0009_change_feed: every change to a client, resource or federation, recorded and announced
-- in the transaction that makes it, so that every replica's in-process caches forget the old
-- record within a second (tokensvc/storage/postgres/changes.py, README *Admin changes*).
--
-- Applied by `tokensvc migrate` after 0008_dpop_par, in one transaction. Never edit an applied
-- migration: add 0011_*.sql instead.
--
-- Triggers, not application code, record the changes: every writer is covered, the CLI, the
-- admin API and an operator's manual SQL alike, and later migrations that add an UPDATE path
-- (0010's secret rotation) need nothing more. Grants and refresh tokens have no trigger: they
-- are written on the hot path and are never cached.

-- The feed: one row per changed record (`kind` 'client', 'resource' or 'federation' and its
-- key; 'truncate' and the table's name for a TRUNCATE, which means "forget everything"). A
-- replica that lost its connection reads the rows after the last `seq` it applied. Rows go
-- after some hours (`tokensvc purge`); the newest always stays, so that a replica can tell a
-- purged gap (clear everything) from nothing having happened.
CREATE TABLE changes (
    seq        bigserial PRIMARY KEY,
    kind       text NOT NULL,
    key        text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX changes_changed_at ON changes (changed_at);  -- `tokensvc purge`, oldest first

-- Writers of the three tables take one transaction-level advisory lock before their statement
-- touches a row, so they commit in the order their `seq`s were drawn: a reader that sees seq n
-- committed sees every smaller one committed (or rolled back, a gap for good), and "the rows
-- after the last seq I applied" is exact. Without it a transaction could draw seq 5, commit
-- after seq 6 was read, and be skipped. Taken before any row lock of the statement, so two
-- single-statement writers cannot deadlock on it; admin writes are rare and short, and the hot
-- path never writes these tables. The key spells "tokenchg" (migrate's session lock is
-- "tokensvc": they never meet).
CREATE FUNCTION tokensvc_changes_serialize() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(8390042714202400871);
    RETURN NULL;
END
$$;

-- Records one change and announces it on channel `tokensvc_changes`, delivered to listeners
-- when (and only if) the transaction commits. The payload is "seq kind key"; a key too long
-- for NOTIFY's 8000-byte payload (identifiers may have 2048 characters of up to 4 bytes each)
-- is announced as its seq alone, and the listener reads the row.
CREATE FUNCTION tokensvc_note_change(change_kind text, change_key text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    change_seq bigint;
BEGIN
    INSERT INTO changes (kind, key) VALUES (change_kind, change_key) RETURNING seq INTO change_seq;
    IF octet_length(change_key) + octet_length(change_kind) <= 7900 THEN
        PERFORM pg_notify('tokensvc_changes', change_seq || ' ' || change_kind || ' ' || change_key);
    ELSE
        PERFORM pg_notify('tokensvc_changes', change_seq::text);
    END IF;
END
$$;

-- AFTER each row: TG_ARGV[0] is the kind, TG_ARGV[1] the key column. An UPDATE that changes
-- the key records both keys.
CREATE FUNCTION tokensvc_record_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_key text;
    new_key text;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_key := to_jsonb(OLD) ->> TG_ARGV[1];
        PERFORM tokensvc_note_change(TG_ARGV[0], old_key);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        new_key := to_jsonb(NEW) ->> TG_ARGV[1];
        IF new_key IS DISTINCT FROM old_key THEN
            PERFORM tokensvc_note_change(TG_ARGV[0], new_key);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- A TRUNCATE has no rows to name: the listeners forget everything.
CREATE FUNCTION tokensvc_record_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tokensvc_note_change('truncate', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER clients_serialize_changes
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION tokensvc_changes_serialize();
CREATE TRIGGER clients_record_changes
    AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION tokensvc_record_change('client', 'client_id');
CREATE TRIGGER clients_record_truncate
    AFTER TRUNCATE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION tokensvc_record_truncate();

CREATE TRIGGER resources_serialize_changes
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON resources
    FOR EACH STATEMENT EXECUTE FUNCTION tokensvc_changes_serialize();
CREATE TRIGGER resources_record_changes
    AFTER INSERT OR UPDATE OR DELETE ON resources
    FOR EACH ROW EXECUTE FUNCTION tokensvc_record_change('resource', 'identifier');
CREATE TRIGGER resources_record_truncate
    AFTER TRUNCATE ON resources
    FOR EACH STATEMENT EXECUTE FUNCTION tokensvc_record_truncate();

CREATE TRIGGER federations_serialize_changes
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON federations
    FOR EACH STATEMENT EXECUTE FUNCTION tokensvc_changes_serialize();
CREATE TRIGGER federations_record_changes
    AFTER INSERT OR UPDATE OR DELETE ON federations
    FOR EACH ROW EXECUTE FUNCTION tokensvc_record_change('federation', 'issuer');
CREATE TRIGGER federations_record_truncate
    AFTER TRUNCATE ON federations
    FOR EACH STATEMENT EXECUTE FUNCTION tokensvc_record_truncate();
