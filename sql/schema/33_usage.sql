-- 33_usage: usage of metered components (31_prices' plan_meters), recorded
-- by applications as it happens: one record per call of record_usage, per
-- element of record_usage_batch, or per row an application COPYs into
-- toss_billing.usage_staging (taken in by ingest_usage).  Recording is
-- idempotent by (subscription, idempotency key: the application's own, kept
-- as usage_key; not a Toss Idempotency-Key, so readable).  The invoice that bills a
-- record marks it (invoice_id): see 32_invoices (_finalize_period_invoice)
-- for why no record is ever billed twice or not at all.

-- @data

-- Usage records.
--   meter_id       the meter of the subscription's plan when it was
--                  recorded (its price applies)
--   occurred_at    when the usage happened (the "at" of record_usage; the
--                  subscription's clock when not given)
--   recorded_at    when it was recorded (real time)
--   invoice_id     the invoice that billed it (NULL: not billed yet)
CREATE TABLE toss_billing.usage_records (
    subscription_id bigint NOT NULL REFERENCES toss_billing.subscriptions (id),
    usage_key       text NOT NULL,
    customer_id     bigint NOT NULL REFERENCES toss_billing.customers (id),
    meter_id        bigint NOT NULL REFERENCES toss_billing.plan_meters (id),
    quantity        bigint NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    invoice_id      bigint REFERENCES toss_billing.invoices (id),
    CONSTRAINT usage_records_pkey PRIMARY KEY (subscription_id, usage_key)
);
CREATE INDEX usage_records_unbilled ON toss_billing.usage_records (subscription_id, occurred_at)
    WHERE invoice_id IS NULL;
CREATE INDEX usage_records_window ON toss_billing.usage_records (subscription_id, occurred_at);
CREATE INDEX usage_records_invoice ON toss_billing.usage_records (invoice_id) WHERE invoice_id IS NOT NULL;
CREATE INDEX usage_records_customer ON toss_billing.usage_records (customer_id);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.usage_records', '');

-- The inbox an application may COPY usage into (operators may INSERT,
-- SELECT and DELETE here): subscription_id, metric, quantity, "at"
-- (optional), usage_key (its idempotency key).  ingest_usage() moves the rows into
-- usage_records; a row it cannot take stays with its rejected_reason (and
-- customer_id, when the subscription exists) until someone deletes it.
CREATE TABLE toss_billing.usage_staging (
    subscription_id bigint,
    metric          text,
    quantity        bigint,
    "at"            timestamptz,
    usage_key       text,
    staged_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    rejected_reason text,
    customer_id     bigint
);
CREATE INDEX usage_staging_customer ON toss_billing.usage_staging (customer_id) WHERE customer_id IS NOT NULL;
SELECT pg_catalog.pg_extension_config_dump('toss_billing.usage_staging', '');

-- @code

-- Records usage of a metric by a subscription, once per idempotency_key:
-- the same key again with the same metric and quantity (and the same "at",
-- when the call gives one) changes nothing (returns false) -- whatever
-- happened since: a plan change (another meter for the metric, or none), a
-- cancel; with another metric, quantity or "at" it is refused (23505).  The
-- check compares what the caller sent with the stored record, not with the
-- plan's meter now.
-- "at" is when it happened (default: the subscription's clock, now() in
-- production); usage of a period whose invoice is finalised already goes on
-- the next invoice as a late line.  Returns true when it was recorded.
CREATE OR REPLACE FUNCTION toss_billing.record_usage(
    subscription_id bigint,
    metric text,
    quantity bigint,
    "at" timestamptz DEFAULT NULL,
    idempotency_key text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_customer bigint;
    v_plan bigint;
    v_status text;
    v_clock bigint;
    v_meter bigint;
    v_at timestamptz;
    v_old_metric text;
    v_old_quantity bigint;
    v_old_at timestamptz;
BEGIN
    IF record_usage.subscription_id IS NULL OR record_usage.metric IS NULL OR record_usage.quantity IS NULL
       OR record_usage.idempotency_key IS NULL THEN
        RAISE EXCEPTION 'subscription_id, metric, quantity and idempotency_key must not be null' USING ERRCODE = '22004',
            HINT = 'The idempotency key makes a retried call harmless: use one per usage event.';
    END IF;
    IF record_usage.quantity < 0 OR record_usage.quantity > 1000000000000 THEN
        RAISE EXCEPTION 'quantity must be between 0 and 1000000000000' USING ERRCODE = '22023';
    END IF;
    IF pg_catalog.octet_length(record_usage.idempotency_key) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'idempotency_key must be 1 to 255 bytes' USING ERRCODE = '22023';
    END IF;
    -- the usual case in one statement: the subscription as it is now (FOR
    -- KEY SHARE waits for a concurrent cancel, which closes its invoices
    -- holding FOR UPDATE, and then sees it canceled), its plan's meter, the
    -- time on its clock (as toss_billing.now(), written out: this runs per
    -- API request)
    WITH target AS (
        SELECT s.customer_id, pm.id AS meter_id,
               COALESCE(record_usage.at, tc.now_at,
                        (SELECT c.frozen_at FROM toss_billing.clock c), pg_catalog.now()) AS occurred_at
          FROM toss_billing.subscriptions s
          JOIN toss_billing.plan_meters pm ON pm.plan_id = s.plan_id AND pm.metric = record_usage.metric
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE s.id = record_usage.subscription_id AND s.status <> 'canceled'
           FOR KEY SHARE OF s)
    INSERT INTO toss_billing.usage_records (subscription_id, usage_key, customer_id, meter_id, quantity, occurred_at)
    SELECT record_usage.subscription_id, record_usage.idempotency_key, t.customer_id, t.meter_id, record_usage.quantity,
           t.occurred_at
      FROM target t
     WHERE pg_catalog.isfinite(t.occurred_at)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        RETURN true;
    END IF;
    -- not recorded: the key was used before -- a retry if it recorded what
    -- this call sends (the metric by name, the quantity, and "at" when this
    -- call gives one: without it the time is the clock's, which a retry
    -- cannot repeat), else a conflict -- or why not (the checks one by one)
    IF record_usage.at IS NOT NULL AND NOT pg_catalog.isfinite(record_usage.at) THEN
        RAISE EXCEPTION 'at must be a finite time' USING ERRCODE = '22023';
    END IF;
    SELECT pm.metric, u.quantity, u.occurred_at INTO v_old_metric, v_old_quantity, v_old_at
      FROM toss_billing.usage_records u
      JOIN toss_billing.plan_meters pm ON pm.id = u.meter_id
     WHERE u.subscription_id = record_usage.subscription_id AND u.usage_key = record_usage.idempotency_key;
    IF FOUND THEN
        IF v_old_metric = record_usage.metric AND v_old_quantity = record_usage.quantity
           AND (record_usage.at IS NULL OR record_usage.at = v_old_at) THEN
            RETURN false;
        END IF;
        RAISE EXCEPTION 'idempotency key "%" was used for other usage', record_usage.idempotency_key USING ERRCODE = '23505',
            DETAIL = pg_catalog.format('It recorded %s of "%s" at %s; this call records %s of "%s"%s.', v_old_quantity,
                                       v_old_metric, v_old_at, record_usage.quantity, record_usage.metric,
                                       CASE WHEN record_usage.at IS NOT NULL THEN ' at ' || record_usage.at::text ELSE '' END),
            HINT = 'Use a new idempotency key for new usage.';
    END IF;
    SELECT s.customer_id, s.plan_id, s.status, s.test_clock_id INTO v_customer, v_plan, v_status, v_clock
      FROM toss_billing.subscriptions s WHERE s.id = record_usage.subscription_id
       FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription % does not exist', record_usage.subscription_id USING ERRCODE = 'P0002';
    END IF;
    IF v_status = 'canceled' THEN
        RAISE EXCEPTION 'subscription % is canceled', record_usage.subscription_id USING ERRCODE = '55000',
            DETAIL = 'Its final invoice billed the usage recorded before it ended.';
    END IF;
    SELECT pm.id INTO v_meter FROM toss_billing.plan_meters pm
     WHERE pm.plan_id = v_plan AND pm.metric = record_usage.metric;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the plan of subscription % has no meter "%"', record_usage.subscription_id, record_usage.metric
            USING ERRCODE = 'P0002', HINT = 'Add it with toss_billing.add_plan_meter().';
    END IF;
    v_at := COALESCE(record_usage.at,
                     CASE WHEN v_clock IS NULL THEN toss_billing.now()
                          ELSE (SELECT tc.now_at FROM toss_billing.test_clocks tc WHERE tc.id = v_clock) END);
    IF NOT pg_catalog.isfinite(v_at) THEN
        RAISE EXCEPTION 'at must be a finite time' USING ERRCODE = '22023';
    END IF;
    -- recorded meanwhile by another session (the key was free above): as above
    SELECT pm.metric, u.quantity, u.occurred_at INTO v_old_metric, v_old_quantity, v_old_at
      FROM toss_billing.usage_records u
      JOIN toss_billing.plan_meters pm ON pm.id = u.meter_id
     WHERE u.subscription_id = record_usage.subscription_id AND u.usage_key = record_usage.idempotency_key;
    IF v_old_metric = record_usage.metric AND v_old_quantity = record_usage.quantity
       AND (record_usage.at IS NULL OR record_usage.at = v_old_at) THEN
        RETURN false;
    END IF;
    RAISE EXCEPTION 'idempotency key "%" was used for other usage', record_usage.idempotency_key USING ERRCODE = '23505',
        DETAIL = pg_catalog.format('It recorded %s of "%s" at %s; this call records %s of "%s"%s.', v_old_quantity,
                                   v_old_metric, v_old_at, record_usage.quantity, record_usage.metric,
                                   CASE WHEN record_usage.at IS NOT NULL THEN ' at ' || record_usage.at::text ELSE '' END),
        HINT = 'Use a new idempotency key for new usage.';
END;
$$;

-- Records many usage events at once: element i of each array is one
-- record_usage call (ats may be NULL, or hold NULLs: the subscription's
-- clock).  One bad element never stops the others: returns one row for each
-- element that was not recorded, by its position (1-based):
--   duplicate  its key was recorded before, with the same metric and
--              quantity (and "at", when the element gives one), whatever
--              changed since (see record_usage)
--   rejected   the reason says why (unknown subscription or metric, bad
--              value, or its key already records other usage)
-- Every element not returned was recorded.
CREATE OR REPLACE FUNCTION toss_billing.record_usage_batch(
    subscription_ids bigint[],
    metrics text[],
    quantities bigint[],
    idempotency_keys text[],
    ats timestamptz[] DEFAULT NULL)
RETURNS TABLE(ordinal integer, idempotency_key text, outcome text, reason text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_n integer := COALESCE(pg_catalog.cardinality(record_usage_batch.subscription_ids), 0);
    v_now timestamptz := toss_billing.now();
    v_recorded bigint[];
BEGIN
    IF record_usage_batch.subscription_ids IS NULL OR record_usage_batch.metrics IS NULL
       OR record_usage_batch.quantities IS NULL OR record_usage_batch.idempotency_keys IS NULL THEN
        RAISE EXCEPTION 'subscription_ids, metrics, quantities and idempotency_keys must not be null'
            USING ERRCODE = '22004';
    END IF;
    IF COALESCE(pg_catalog.cardinality(record_usage_batch.metrics), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(record_usage_batch.quantities), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(record_usage_batch.idempotency_keys), 0) <> v_n
       OR (record_usage_batch.ats IS NOT NULL AND COALESCE(pg_catalog.cardinality(record_usage_batch.ats), 0) <> v_n) THEN
        RAISE EXCEPTION 'the arrays must all have the same length' USING ERRCODE = '22023';
    END IF;
    IF v_n > 100000 THEN
        RAISE EXCEPTION 'a batch holds at most 100000 records' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('This one has %s.', v_n);
    END IF;
    IF v_n = 0 THEN
        RETURN;
    END IF;
    -- the subscriptions as they are now (see record_usage)
    PERFORM FROM toss_billing.subscriptions s
     WHERE s.id = ANY (record_usage_batch.subscription_ids)
     ORDER BY s.id
       FOR KEY SHARE;
    -- one statement planned for these arrays (EXECUTE: a plan cached for
    -- the session would be made for arrays of unknown size, and joins them
    -- 2.5 times slower)
    EXECUTE $q$
    WITH input AS (
        SELECT i.*
          FROM unnest($1, $2, $3, $4, COALESCE($5, pg_catalog.array_fill(NULL::timestamptz, ARRAY[$6])))
               WITH ORDINALITY AS i(sid, metric, qty, ikey, at_given, pos)),
    resolved AS (
        SELECT i.*, s.customer_id, pm.id AS meter_id,
               COALESCE(i.at_given, tc.now_at, $7) AS occurred_at,
               CASE WHEN i.sid IS NULL OR i.metric IS NULL OR i.qty IS NULL OR i.ikey IS NULL THEN 'a field is null'
                    WHEN s.id IS NULL THEN 'the subscription does not exist'
                    WHEN s.status = 'canceled' THEN 'the subscription is canceled'
                    WHEN pm.id IS NULL THEN 'the subscription''s plan has no such meter'
                    WHEN i.qty < 0 OR i.qty > 1000000000000 THEN 'quantity must be between 0 and 1000000000000'
                    WHEN pg_catalog.octet_length(i.ikey) NOT BETWEEN 1 AND 255 THEN 'idempotency_key must be 1 to 255 bytes'
                    WHEN NOT pg_catalog.isfinite(COALESCE(i.at_given, tc.now_at, $7)) THEN 'at must be a finite time'
               END AS why
          FROM input i
          LEFT JOIN toss_billing.subscriptions s ON s.id = i.sid
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
          LEFT JOIN toss_billing.plan_meters pm ON pm.plan_id = s.plan_id AND pm.metric = i.metric),
    firsts AS (
        SELECT DISTINCT ON (r.sid, r.ikey) r.* FROM resolved r WHERE r.why IS NULL ORDER BY r.sid, r.ikey, r.pos),
    inserted AS (
        INSERT INTO toss_billing.usage_records AS u (subscription_id, usage_key, customer_id, meter_id, quantity,
                                                     occurred_at)
        SELECT f.sid, f.ikey, f.customer_id, f.meter_id, f.qty, f.occurred_at FROM firsts f
        ON CONFLICT DO NOTHING
        RETURNING u.subscription_id, u.usage_key)
    SELECT pg_catalog.array_agg(f.pos)
      FROM inserted x JOIN firsts f ON f.sid = x.subscription_id AND f.ikey = x.usage_key
    $q$
      INTO v_recorded
     USING record_usage_batch.subscription_ids, record_usage_batch.metrics, record_usage_batch.quantities,
           record_usage_batch.idempotency_keys, record_usage_batch.ats, v_n, v_now;

    IF COALESCE(pg_catalog.cardinality(v_recorded), 0) = v_n THEN
        RETURN;
    END IF;
    -- what was not recorded, against what the keys hold now (EXECUTE, as
    -- above: a batch of 100,000 anti-joined by a plan made for 10 rows)
    -- (a key recorded before is compared with what the element sends: the
    -- stored record's metric, quantity and time, not the plan's meter now)
    RETURN QUERY EXECUTE $q$
    WITH input AS (
        SELECT i.*
          FROM unnest($1, $2, $3, $4, COALESCE($6, pg_catalog.array_fill(NULL::timestamptz, ARRAY[$7])))
               WITH ORDINALITY AS i(sid, metric, qty, ikey, at_given, pos)),
    resolved AS (
        SELECT i.*, s.id AS s_id, s.status, pm.id AS meter_id
          FROM input i
          LEFT JOIN toss_billing.subscriptions s ON s.id = i.sid
          LEFT JOIN toss_billing.plan_meters pm ON pm.plan_id = s.plan_id AND pm.metric = i.metric
         WHERE NOT EXISTS (SELECT FROM unnest($5) AS x(pos) WHERE x.pos = i.pos)),
    compared AS (
        SELECT r.*, u.subscription_id IS NOT NULL AS used, u.quantity AS old_qty, um.metric AS old_metric,
               u.subscription_id IS NOT NULL AND um.metric = r.metric AND u.quantity = r.qty
                   AND (r.at_given IS NULL OR u.occurred_at = r.at_given) AS same
          FROM resolved r
          LEFT JOIN toss_billing.usage_records u ON u.subscription_id = r.sid AND u.usage_key = r.ikey
          LEFT JOIN toss_billing.plan_meters um ON um.id = u.meter_id)
    SELECT c.pos::integer, c.ikey,
           CASE WHEN c.same THEN 'duplicate' ELSE 'rejected' END,
           CASE WHEN c.sid IS NULL OR c.metric IS NULL OR c.qty IS NULL OR c.ikey IS NULL THEN 'a field is null'
                WHEN c.s_id IS NULL THEN 'the subscription does not exist'
                WHEN c.same THEN 'recorded before with the same metric and quantity'
                WHEN c.qty < 0 OR c.qty > 1000000000000 THEN 'quantity must be between 0 and 1000000000000'
                WHEN pg_catalog.octet_length(c.ikey) NOT BETWEEN 1 AND 255 THEN 'idempotency_key must be 1 to 255 bytes'
                WHEN c.used AND c.old_metric = c.metric AND c.old_qty = c.qty
                THEN pg_catalog.format('the key already records other usage (%s of %s at another time)', c.old_qty,
                                       c.old_metric)
                WHEN c.used THEN pg_catalog.format('the key already records other usage (%s of %s)', c.old_qty, c.old_metric)
                WHEN c.meter_id IS NULL THEN 'the subscription''s plan has no such meter'
                WHEN c.status = 'canceled' THEN 'the subscription is canceled'
                ELSE 'at must be a finite time' END
      FROM compared c
     ORDER BY c.pos
    $q$
     USING record_usage_batch.subscription_ids, record_usage_batch.metrics, record_usage_batch.quantities,
           record_usage_batch.idempotency_keys, v_recorded, record_usage_batch.ats, v_n;
END;
$$;

-- Takes up to max_rows rows of usage_staging into usage_records (as
-- record_usage_batch does); the rows it takes are removed, but rejected ones
-- stay with their rejected_reason.  Concurrent calls take different rows.
-- Returns how many rows were recorded, were duplicates, were rejected.
CREATE OR REPLACE FUNCTION toss_billing.ingest_usage(max_rows integer DEFAULT 100000,
                                                     OUT recorded bigint, OUT duplicates bigint, OUT rejected bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_subs bigint[];
    v_metrics text[];
    v_quantities bigint[];
    v_keys text[];
    v_ats timestamptz[];
    v_staged timestamptz[];
    v_n integer;
BEGIN
    IF ingest_usage.max_rows IS NULL THEN
        RAISE EXCEPTION 'max_rows must not be null' USING ERRCODE = '22004';
    END IF;
    IF ingest_usage.max_rows NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'max_rows must be between 1 and 100000' USING ERRCODE = '22023';
    END IF;
    WITH taken AS (
        DELETE FROM toss_billing.usage_staging st
         WHERE st.ctid = ANY (ARRAY(SELECT x.ctid FROM toss_billing.usage_staging x
                                     WHERE x.rejected_reason IS NULL
                                     LIMIT ingest_usage.max_rows
                                       FOR UPDATE SKIP LOCKED))
        RETURNING st.*)
    SELECT pg_catalog.array_agg(t.subscription_id), pg_catalog.array_agg(t.metric), pg_catalog.array_agg(t.quantity),
           pg_catalog.array_agg(t.usage_key), pg_catalog.array_agg(t.at), pg_catalog.array_agg(t.staged_at)
      INTO v_subs, v_metrics, v_quantities, v_keys, v_ats, v_staged
      FROM taken t;
    v_n := COALESCE(pg_catalog.cardinality(v_subs), 0);
    IF v_n = 0 THEN
        recorded := 0; duplicates := 0; rejected := 0;
        RETURN;
    END IF;
    WITH outcome AS (
        SELECT * FROM toss_billing.record_usage_batch(v_subs, v_metrics, v_quantities, v_keys, v_ats)),
    kept AS (
        INSERT INTO toss_billing.usage_staging (subscription_id, metric, quantity, "at", usage_key, staged_at,
                                                rejected_reason, customer_id)
        SELECT v_subs[o.ordinal], v_metrics[o.ordinal], v_quantities[o.ordinal], v_ats[o.ordinal], v_keys[o.ordinal],
               v_staged[o.ordinal], o.reason,
               (SELECT s.customer_id FROM toss_billing.subscriptions s WHERE s.id = v_subs[o.ordinal])
          FROM outcome o WHERE o.outcome = 'rejected'
        RETURNING 1)
    SELECT v_n - pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE o.outcome = 'duplicate'),
           pg_catalog.count(*) FILTER (WHERE o.outcome = 'rejected')
      INTO recorded, duplicates, rejected
      FROM outcome o;
END;
$$;

GRANT EXECUTE ON FUNCTION toss_billing.record_usage(bigint, text, bigint, timestamptz, text),
                          toss_billing.record_usage_batch(bigint[], text[], bigint[], text[], timestamptz[]),
                          toss_billing.ingest_usage(integer)
    TO toss_billing_operator;
GRANT SELECT ON toss_billing.usage_records TO toss_billing_operator, toss_billing_auditor;
GRANT SELECT, INSERT, DELETE ON toss_billing.usage_staging TO toss_billing_operator;
GRANT SELECT ON toss_billing.usage_staging TO toss_billing_auditor;
