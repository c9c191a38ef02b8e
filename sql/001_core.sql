-- Sales, their spaces and registrants, the holds granted at the grab, and
-- the audit log. Money is in fen (1 yuan = 100 fen); times are timestamptz.

CREATE TABLE sales (
    id               bigserial PRIMARY KEY,
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    zones            text[] NOT NULL CHECK (cardinality(zones) >= 1),
    opens_at         timestamptz NOT NULL,
    closes_at        timestamptz NOT NULL,
    buyer_limit      integer NOT NULL DEFAULT 1 CHECK (buyer_limit >= 1),
    payment_window   interval NOT NULL DEFAULT interval '48 hours'
                     CHECK (payment_window > interval '0'),
    -- draft: being set up; armed: loaded into Redis (open during its window);
    -- paused: loaded, grabs stopped; closed: no more grabs.
    state            text NOT NULL DEFAULT 'draft'
                     CHECK (state IN ('draft', 'armed', 'paused', 'closed')),
    -- Bumped by every arming, so caches can tell one loading from the next.
    generation       bigint NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (closes_at > opens_at)
);

CREATE TABLE spaces (
    id         bigserial PRIMARY KEY,
    sale_id    bigint NOT NULL REFERENCES sales (id),
    -- Position in the sale's availability bitmap, 0-based, in import order.
    position   integer NOT NULL CHECK (position >= 0),
    label      text NOT NULL CHECK (length(label) BETWEEN 1 AND 32),
    zone       text NOT NULL,
    level      text NOT NULL,
    kind       text NOT NULL
               CHECK (kind IN ('standard', 'large', 'ev_charging', 'tandem')),
    price_fen  bigint NOT NULL CHECK (price_fen > 0),
    UNIQUE (sale_id, label),
    UNIQUE (sale_id, position)
);

CREATE TABLE registrants (
    id                bigserial PRIMARY KEY,
    sale_id           bigint NOT NULL REFERENCES sales (id),
    registration_no   text NOT NULL CHECK (length(registration_no) BETWEEN 1 AND 32),
    name              text NOT NULL,
    phone             text NOT NULL,
    access_code_hash  text NOT NULL,
    buyer_limit       integer NOT NULL CHECK (buyer_limit >= 1),
    UNIQUE (sale_id, registration_no)
);

CREATE INDEX registrants_phone_last4 ON registrants (sale_id, right(phone, 4));

CREATE TABLE holds (
    -- "<sale>-<sequence>", issued by the grab script in Redis.
    id              text PRIMARY KEY,
    sale_id         bigint NOT NULL REFERENCES sales (id),
    space_id        bigint NOT NULL REFERENCES spaces (id),
    registrant_id   bigint NOT NULL REFERENCES registrants (id),
    granted_at      timestamptz NOT NULL,
    deadline        timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'held'
                    CHECK (status IN ('held', 'paid', 'signed', 'cancelled', 'expired')),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- The space's price when it was granted: the amount due.
    price_fen       bigint NOT NULL CHECK (price_fen > 0),
    paid_fen        bigint,
    payment_method  text,
    receipt_no      text,
    paid_at         timestamptz,
    paid_by         text,
    queue_no        integer,
    contract_no     text,
    signed_at       timestamptz,
    ended_at        timestamptz,
    end_reason      text,
    UNIQUE (sale_id, queue_no)
);

-- The database's own guard for "one buyer per space": a space has at most
-- one hold that is still alive.
CREATE UNIQUE INDEX holds_one_live_per_space ON holds (space_id)
    WHERE status IN ('held', 'paid', 'signed');
CREATE INDEX holds_by_registrant ON holds (registrant_id);
CREATE INDEX holds_by_sale_status ON holds (sale_id, status);

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    sale_id     bigint REFERENCES sales (id),
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor       text NOT NULL,
    action      text NOT NULL,
    subject     text NOT NULL,
    before      jsonb,
    after       jsonb
);

CREATE INDEX audit_log_by_sale ON audit_log (sale_id, id);
