-- The sales office after the grab: staff accounts, queue numbers, the
-- waiting list, per-sale release policy, and payment and contract guards.

CREATE TABLE staff (
    id              bigserial PRIMARY KEY,
    username        text NOT NULL UNIQUE
                    CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,31}$'),
    role            text NOT NULL CHECK (role IN ('cashier', 'manager')),
    password_hash   text NOT NULL,
    -- Bumped by a logout; a session token carries the value it was issued
    -- with, so a logout ends every session of that account.
    session_epoch   integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- The last queue number issued per sale. A payment locks this row in the
-- same transaction as the hold it confirms, so a rollback returns the
-- number and numbers have no gaps.
CREATE TABLE queue_counters (
    sale_id   bigint PRIMARY KEY REFERENCES sales (id),
    last_no   integer NOT NULL DEFAULT 0 CHECK (last_no >= 0)
);

-- Where a space goes when its hold ends: back on the open market, or as an
-- offer to the first matching entry of the waiting list.
ALTER TABLE sales
    ADD COLUMN released_to text NOT NULL DEFAULT 'market'
        CHECK (released_to IN ('market', 'waiting_list')),
    ADD COLUMN offer_window interval NOT NULL DEFAULT interval '24 hours'
        CHECK (offer_window > interval '0');

CREATE TABLE waiting_list (
    id              bigserial PRIMARY KEY,
    sale_id         bigint NOT NULL REFERENCES sales (id),
    registrant_id   bigint NOT NULL REFERENCES registrants (id),
    -- What the registrant accepts: a zone, a kind, or both (both must match).
    zone            text,
    kind            text CHECK (kind IN ('standard', 'large', 'ev_charging', 'tandem')),
    joined_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- waiting: in line; offered: holds the offer `hold_id`; lapsed: the
    -- offer expired or was cancelled; left: removed by the office.
    status          text NOT NULL DEFAULT 'waiting'
                    CHECK (status IN ('waiting', 'offered', 'lapsed', 'left')),
    hold_id         text REFERENCES holds (id),
    CHECK (zone IS NOT NULL OR kind IS NOT NULL)
);

CREATE UNIQUE INDEX waiting_list_one_live_entry
    ON waiting_list (sale_id, registrant_id) WHERE status IN ('waiting', 'offered');
CREATE INDEX waiting_list_in_line ON waiting_list (sale_id, joined_at, id)
    WHERE status = 'waiting';

-- A receipt or a contract number identifies one hold within a sale.
CREATE UNIQUE INDEX holds_receipt_per_sale ON holds (sale_id, receipt_no)
    WHERE receipt_no IS NOT NULL;
CREATE UNIQUE INDEX holds_contract_per_sale ON holds (sale_id, contract_no)
    WHERE contract_no IS NOT NULL;
CREATE INDEX holds_overdue ON holds (deadline) WHERE status = 'held';
