-- A tamper-evident audit log: every entry is chained to the one before it
-- in the same sale (entries without a sale form chain 0).
--
-- A BEFORE INSERT trigger numbers each entry (`seq`, 1, 2, ... per chain),
-- stamps its time, and stores
--   hash = sha256(prev_hash \n seq \n sale_id \n at \n actor \n action
--                 \n subject \n before \n after)
-- in hex, where `at` is UTC as YYYY-MM-DDTHH:MM:SS.ffffffZ and a missing
-- before or after is the text null. The trigger locks the chain's row in
-- audit_chain_heads until the inserting transaction ends, so the entries of
-- one sale are chained one at a time, whichever code inserts them.
-- `app.audit` recomputes the chain in Python to verify it.

CREATE TABLE audit_chain_heads (
    chain      bigint PRIMARY KEY,
    last_seq   bigint NOT NULL,
    last_hash  text NOT NULL
);

ALTER TABLE audit_log
    ADD COLUMN seq bigint,
    ADD COLUMN prev_hash text,
    ADD COLUMN hash text;

CREATE FUNCTION audit_entry_hash(
    prev_hash text, seq bigint, sale_id bigint, at timestamptz, actor text,
    action text, subject text, before jsonb, after jsonb
) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT encode(sha256(convert_to(concat_ws(E'\n',
        prev_hash,
        seq::text,
        coalesce(sale_id::text, ''),
        to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        actor,
        action,
        subject,
        coalesce(before::text, 'null'),
        coalesce(after::text, 'null')), 'UTF8')), 'hex')
$$;

CREATE FUNCTION audit_log_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    chain_id bigint := coalesce(NEW.sale_id, 0);
    head audit_chain_heads%ROWTYPE;
BEGIN
    INSERT INTO audit_chain_heads (chain, last_seq, last_hash)
    VALUES (chain_id, 0, '')
    ON CONFLICT (chain) DO NOTHING;
    SELECT * INTO head FROM audit_chain_heads WHERE chain = chain_id FOR UPDATE;

    NEW.seq := head.last_seq + 1;
    NEW.prev_hash := head.last_hash;
    -- Stamped under the lock, so times never go backwards along a chain.
    NEW.at := clock_timestamp();
    NEW.hash := audit_entry_hash(NEW.prev_hash, NEW.seq, NEW.sale_id, NEW.at,
                                 NEW.actor, NEW.action, NEW.subject,
                                 NEW.before, NEW.after);
    UPDATE audit_chain_heads SET last_seq = NEW.seq, last_hash = NEW.hash
    WHERE chain = chain_id;
    RETURN NEW;
END
$$;

-- Chain the entries written before this migration, in id order.
DO $$
DECLARE
    entry record;
    head audit_chain_heads%ROWTYPE;
    entry_hash text;
BEGIN
    FOR entry IN SELECT * FROM audit_log ORDER BY id LOOP
        INSERT INTO audit_chain_heads (chain, last_seq, last_hash)
        VALUES (coalesce(entry.sale_id, 0), 0, '')
        ON CONFLICT (chain) DO NOTHING;
        SELECT * INTO head FROM audit_chain_heads
        WHERE chain = coalesce(entry.sale_id, 0);
        entry_hash := audit_entry_hash(head.last_hash, head.last_seq + 1,
                                       entry.sale_id, entry.at, entry.actor,
                                       entry.action, entry.subject,
                                       entry.before, entry.after);
        UPDATE audit_log SET seq = head.last_seq + 1, prev_hash = head.last_hash,
                             hash = entry_hash
        WHERE id = entry.id;
        UPDATE audit_chain_heads SET last_seq = head.last_seq + 1,
                                     last_hash = entry_hash
        WHERE chain = head.chain;
    END LOOP;
END
$$;

ALTER TABLE audit_log
    ALTER COLUMN seq SET NOT NULL,
    ALTER COLUMN prev_hash SET NOT NULL,
    ALTER COLUMN hash SET NOT NULL;

CREATE INDEX audit_log_chain_order ON audit_log (sale_id, seq, id);
CREATE INDEX audit_log_by_subject ON audit_log (subject);

CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_chain();

CREATE FUNCTION audit_log_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP;
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_reject_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_reject_change();
