-- 32_invoices: what a subscription owes, as invoices made of lines.  An
-- invoice is the obligation the ledger's orders pay: the runner finalises a
-- subscription period's invoice when the period starts (after the policy's
-- grace window) and charges exactly its amount_due under the period's order
-- (obligation 'subscription:<id>:<period>'); other invoices (an immediate
-- proration, one-off items charged at once, the final invoice of a canceled
-- subscription) are charged under orders of their own (obligation
-- 'invoice:<id>', order id 'inv<id>-a<generation>-<tag>').
--
-- A period invoice bills in advance and in arrears: the plan line (the
-- plan's price x quantity) for the period that starts, the usage of the
-- period that ended, the proration and one-off lines added since the last
-- invoice, what earlier invoices carried forward, and one discount line.
-- Lifecycle: draft (lines may still be added) -> open (finalised, charged)
-- -> paid | uncollectible (dunning gave up: the subscription is unpaid) |
-- void (no longer owed).  Amounts: see 31_prices (_won) for the rounding.

-- @data

-- The invoice policy: one row.
--   grace_period      how long after a period starts its draft invoice can
--                     still take lines (and usage of the period that ended
--                     still counts as on time) before it is finalised and
--                     charged (Stripe's one-hour draft window); default 0
--   consent_fallback  what the runner does with an invoice whose recurring
--                     amount rises without a valid consent (34_consent):
--                     keep_old_amount (charge the previous recurring amount;
--                     a consent_adjustment line takes the increase off) or
--                     cancel (the subscription ends when the increase would
--                     take effect; a trial's conversion always cancels)
--   consent_reminder  how long before the effective date a consent_reminder
--                     event follows the consent_required one; 0 = none
--   consent_rule      enforce (the default): the consent rule of
--                     34_consent applies; off: it does not (only for an
--                     installation whose customers are businesses, which the
--                     consumer law does not cover)
CREATE TABLE toss_billing.invoice_policy (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    grace_period     interval NOT NULL DEFAULT '0'
                     CHECK (grace_period OPERATOR(pg_catalog.>=) '0'::interval
                            AND grace_period OPERATOR(pg_catalog.<=) '7 days'::interval),
    consent_fallback text NOT NULL DEFAULT 'keep_old_amount'
                     CHECK (consent_fallback OPERATOR(pg_catalog.=) ANY (ARRAY['keep_old_amount', 'cancel'])),
    consent_reminder interval NOT NULL DEFAULT '7 days'
                     CHECK (consent_reminder OPERATOR(pg_catalog.>=) '0'::interval
                            AND consent_reminder OPERATOR(pg_catalog.<) '30 days'::interval),
    consent_rule     text NOT NULL DEFAULT 'enforce'
                     CHECK (consent_rule OPERATOR(pg_catalog.=) ANY (ARRAY['enforce', 'off'])),
    updated_at       timestamptz NOT NULL DEFAULT pg_catalog.now()
);
INSERT INTO toss_billing.invoice_policy DEFAULT VALUES;
SELECT pg_catalog.pg_extension_config_dump('toss_billing.invoice_policy', '');

-- Invoices.  Times (period_*, usage_*, *_at but created_at / updated_at)
-- are on the subscription's clock.
--   kind            period (one per subscription period), proration (an
--                   immediate plan or quantity change), one_off (items
--                   charged at once), final (what a canceled subscription
--                   still owes: usage, items, remainders)
--   period_number   the subscription period a period invoice bills (its
--                   plan line covers [period_start, period_end))
--   usage_from, usage_until  the usage window billed on time: records that
--                   occurred in it; older unbilled records come as late lines
--   plan_id, unit_amount, quantity  the plan line's terms; coupon_id the
--                   coupon that discounted it (NULL: none)
--   agreed_unit_amount, agreed_coupon_id  the price terms the customer is
--                   held to after this invoice (the new ones, or the old ones
--                   kept for want of consent): the baseline of the consent rule
--   subtotal        the sum of every line but the discount line
--   discount        what the discount line takes off (>= 0)
--   total           subtotal - discount
--   carried_forward a total Toss cannot be asked for (1..99 KRW, below its
--                   minimum of 100; or a credit, below 0), moved to the next
--                   invoice as a carried line (carried_into_invoice_id)
--   amount_due      what is charged: total - carried_forward (0 or >= 100)
--   tax_free_amount the tax-free part of amount_due, sent as taxFreeAmount:
--                   the tax-free lines less their share of the discount
--   amount_paid     what the paying order charged
--   recurring_amount  a period invoice's recurring part (plan lines, less
--                   their discount, plus any consent_adjustment)
--   consent         not_needed, consented, kept_old_amount, canceled (34_consent)
--   description     the Toss orderName of its order
--   next_attempt_at when the runner charges an open invoice of kind other
--                   than period (period invoices follow their subscription)
CREATE TABLE toss_billing.invoices (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id             bigint NOT NULL REFERENCES toss_billing.customers (id),
    subscription_id         bigint NOT NULL REFERENCES toss_billing.subscriptions (id),
    kind                    text NOT NULL
                            CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['period', 'proration', 'one_off', 'final'])),
    period_number           integer CHECK (period_number OPERATOR(pg_catalog.>=) 0),
    status                  text NOT NULL DEFAULT 'draft'
                            CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['draft', 'open', 'paid', 'uncollectible', 'void'])),
    description             text NOT NULL CHECK (pg_catalog.char_length(description) OPERATOR(pg_catalog.<=) 100),
    period_start            timestamptz,
    period_end              timestamptz,
    usage_from              timestamptz,
    usage_until             timestamptz,
    plan_id                 bigint REFERENCES toss_billing.plans (id),
    unit_amount             bigint,
    quantity                integer,
    coupon_id               bigint REFERENCES toss_billing.coupons (id),
    agreed_unit_amount      bigint,
    agreed_coupon_id        bigint REFERENCES toss_billing.coupons (id),
    subtotal                bigint NOT NULL DEFAULT 0,
    discount                bigint NOT NULL DEFAULT 0 CHECK (discount OPERATOR(pg_catalog.>=) 0),
    total                   bigint NOT NULL DEFAULT 0,
    carried_forward         bigint NOT NULL DEFAULT 0,
    amount_due              bigint NOT NULL DEFAULT 0
                            CHECK (amount_due OPERATOR(pg_catalog.=) 0 OR amount_due OPERATOR(pg_catalog.>=) 100),
    tax_free_amount         bigint NOT NULL DEFAULT 0
                            CHECK (tax_free_amount OPERATOR(pg_catalog.>=) 0
                                   AND tax_free_amount OPERATOR(pg_catalog.<=) amount_due),
    amount_paid             bigint NOT NULL DEFAULT 0,
    recurring_amount        bigint,
    consent                 text CHECK (consent OPERATOR(pg_catalog.=) ANY (ARRAY['not_needed', 'consented',
                                                                                  'kept_old_amount', 'canceled'])),
    carried_into_invoice_id bigint REFERENCES toss_billing.invoices (id),
    status_reason           text,
    next_attempt_at         timestamptz,
    finalized_at            timestamptz,
    paid_at                 timestamptz,
    voided_at               timestamptz,
    uncollectible_at        timestamptz,
    created_at              timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at              timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT invoices_period_number CHECK ((kind OPERATOR(pg_catalog.=) 'period')
                                             OPERATOR(pg_catalog.=) (period_number IS NOT NULL)),
    CONSTRAINT invoices_amounts CHECK (total OPERATOR(pg_catalog.=) (subtotal OPERATOR(pg_catalog.-) discount)
                                       AND amount_due OPERATOR(pg_catalog.=) (total OPERATOR(pg_catalog.-) carried_forward))
);
CREATE UNIQUE INDEX invoices_one_per_period ON toss_billing.invoices (subscription_id, period_number)
    WHERE kind OPERATOR(pg_catalog.=) 'period';
CREATE INDEX invoices_subscription ON toss_billing.invoices (subscription_id, id);
CREATE INDEX invoices_customer ON toss_billing.invoices (customer_id);
CREATE INDEX invoices_due ON toss_billing.invoices (next_attempt_at, id)
    WHERE status OPERATOR(pg_catalog.=) 'open' AND next_attempt_at IS NOT NULL;
CREATE INDEX invoices_carried ON toss_billing.invoices (subscription_id)
    WHERE carried_forward OPERATOR(pg_catalog.<>) 0 AND carried_into_invoice_id IS NULL;
-- the period invoices being charged (the runner's claim): as many as are
-- due, however long the history
CREATE INDEX invoices_open_period ON toss_billing.invoices (subscription_id, period_number)
    WHERE kind OPERATOR(pg_catalog.=) 'period'
      AND status OPERATOR(pg_catalog.=) ANY (ARRAY['open', 'uncollectible']);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.invoices', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.invoices_id_seq', '');

-- The lines of invoices.
--   kind        plan, proration (credit for unused time: negative; charge
--               for the remaining time), usage (one per meter and window;
--               late: usage of a window an earlier invoice finalised),
--               one_off (add_invoice_item), carried (an earlier invoice's
--               carried_forward, source_invoice_id), consent_adjustment
--               (takes an unconsented increase off), discount (one per
--               invoice, coupon_id; negative)
--   quantity, unit_amount  how the amount was reached (unit_amount NULL
--               for tiered usage: detail has the tiers)
--   amount      KRW, negative for credits
--   tax_free    part of the invoice's tax-free amount
--   item_key    add_invoice_item's idempotency_key (the application's own
--               key, not a Toss Idempotency-Key), unique per subscription
CREATE TABLE toss_billing.invoice_items (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id        bigint NOT NULL REFERENCES toss_billing.invoices (id),
    customer_id       bigint NOT NULL REFERENCES toss_billing.customers (id),
    subscription_id   bigint NOT NULL REFERENCES toss_billing.subscriptions (id),
    kind              text NOT NULL
                      CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['plan', 'proration', 'usage', 'one_off', 'carried',
                                                                     'consent_adjustment', 'discount'])),
    description       text NOT NULL
                      CHECK (pg_catalog.char_length(description) OPERATOR(pg_catalog.<=) 300),
    period_start      timestamptz,
    period_end        timestamptz,
    quantity          bigint NOT NULL DEFAULT 1,
    unit_amount       numeric,
    amount            bigint NOT NULL,
    tax_free          boolean NOT NULL DEFAULT false,
    late              boolean NOT NULL DEFAULT false,
    meter_id          bigint REFERENCES toss_billing.plan_meters (id),
    coupon_id         bigint REFERENCES toss_billing.coupons (id),
    source_invoice_id bigint REFERENCES toss_billing.invoices (id),
    item_key          text CHECK (pg_catalog.char_length(item_key) OPERATOR(pg_catalog.<=) 255),
    detail            jsonb,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX invoice_items_invoice ON toss_billing.invoice_items (invoice_id);
CREATE INDEX invoice_items_customer ON toss_billing.invoice_items (customer_id);
CREATE UNIQUE INDEX invoice_items_item_key ON toss_billing.invoice_items (subscription_id, item_key)
    WHERE item_key IS NOT NULL;
SELECT pg_catalog.pg_extension_config_dump('toss_billing.invoice_items', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.invoice_items_id_seq', '');

-- One line of an invoice being composed (preview_invoice shows them):
-- invoice_items' columns; item_id is the stored line's id (NULL for a line
-- computed at finalisation).
CREATE TYPE toss_billing.invoice_line AS (
    item_id           bigint,
    kind              text,
    description       text,
    period_start      timestamptz,
    period_end        timestamptz,
    quantity          bigint,
    unit_amount       numeric,
    amount            bigint,
    tax_free          boolean,
    late              boolean,
    meter_id          bigint,
    coupon_id         bigint,
    source_invoice_id bigint,
    detail            jsonb
);

-- An invoice as it would be finalised now (preview_invoice): its header
-- (the columns of toss_billing.invoices), lines and totals.
CREATE TYPE toss_billing.invoice_preview AS (
    subscription_id        bigint,
    invoice_id             bigint,
    kind                   text,
    period_number          integer,
    description            text,
    period_start           timestamptz,
    period_end             timestamptz,
    usage_from             timestamptz,
    usage_until            timestamptz,
    lines                  toss_billing.invoice_line[],
    subtotal               bigint,
    discount               bigint,
    total                  bigint,
    carried_forward        bigint,
    amount_due             bigint,
    tax_free_amount        bigint,
    recurring_amount       bigint,
    plan_id                bigint,
    unit_amount            bigint,
    quantity               integer,
    coupon_id              bigint,
    agreed_unit_amount     bigint,
    agreed_coupon_id       bigint,
    consent                text,
    consent_requirement_id bigint
);

-- One usage record as the composition of an invoice takes it.
CREATE TYPE toss_billing._usage_row AS (
    meter_id        bigint,
    quantity        bigint,
    occurred_at     timestamptz,
    recorded_at     timestamptz,
    usage_key       text
);

-- @code

-- Inserting a policy replaces the one there is (a restored dump's row
-- arrives after CREATE EXTENSION made the default one).
CREATE OR REPLACE FUNCTION toss_billing._invoice_policy_replace()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM toss_billing.invoice_policy;
    RETURN NEW;
END;
$$;
CREATE OR REPLACE TRIGGER invoice_policy_replace BEFORE INSERT ON toss_billing.invoice_policy
    FOR EACH ROW EXECUTE FUNCTION toss_billing._invoice_policy_replace();

-- Changes the invoice policy; a NULL argument keeps the current value.
CREATE OR REPLACE FUNCTION toss_billing.set_invoice_policy(
    grace_period interval DEFAULT NULL,
    consent_fallback text DEFAULT NULL,
    consent_reminder interval DEFAULT NULL,
    consent_rule text DEFAULT NULL)
RETURNS toss_billing.invoice_policy
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_policy toss_billing.invoice_policy;
BEGIN
    IF set_invoice_policy.grace_period < '0'::interval OR set_invoice_policy.grace_period > '7 days'::interval THEN
        RAISE EXCEPTION 'grace_period must be between 0 and 7 days' USING ERRCODE = '22023';
    END IF;
    IF set_invoice_policy.consent_fallback <> ALL (ARRAY['keep_old_amount', 'cancel']) THEN
        RAISE EXCEPTION 'consent_fallback must be keep_old_amount or cancel' USING ERRCODE = '22023';
    END IF;
    IF set_invoice_policy.consent_reminder < '0'::interval OR set_invoice_policy.consent_reminder >= '30 days'::interval THEN
        RAISE EXCEPTION 'consent_reminder must be at least 0 and less than 30 days' USING ERRCODE = '22023',
            DETAIL = 'It is how long before the effective date the reminder is sent; 0 sends none.';
    END IF;
    IF set_invoice_policy.consent_rule <> ALL (ARRAY['enforce', 'off']) THEN
        RAISE EXCEPTION 'consent_rule must be enforce or off' USING ERRCODE = '22023';
    END IF;
    UPDATE toss_billing.invoice_policy p
       SET consent_rule = COALESCE(set_invoice_policy.consent_rule, p.consent_rule),
           grace_period = COALESCE(set_invoice_policy.grace_period, p.grace_period),
           consent_fallback = COALESCE(set_invoice_policy.consent_fallback, p.consent_fallback),
           consent_reminder = COALESCE(set_invoice_policy.consent_reminder, p.consent_reminder),
           updated_at = pg_catalog.now()
    RETURNING * INTO v_policy;
    RETURN v_policy;
END;
$$;

-- The period whose invoice is a subscription's next one: the open period,
-- unless its invoice is finalised already, then the one after it.
CREATE OR REPLACE FUNCTION toss_billing._next_period(sub toss_billing.subscriptions)
RETURNS integer
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN EXISTS (SELECT FROM toss_billing.invoices i
                              WHERE i.subscription_id OPERATOR(pg_catalog.=) ($1).id
                                AND i.kind OPERATOR(pg_catalog.=) 'period'
                                AND i.period_number OPERATOR(pg_catalog.=) ($1).period_number
                                AND i.status OPERATOR(pg_catalog.<>) 'draft')
                THEN ($1).period_number OPERATOR(pg_catalog.+) 1 ELSE ($1).period_number END;
END;
$$;

-- A subscription's price terms for period p (the open period or the next
-- one), with the changes scheduled for it: the plan, the unit amount (its
-- price override, else the plan's amount), the quantity; and, for the open
-- period, where it ends.
CREATE OR REPLACE FUNCTION toss_billing._terms_at(sub toss_billing.subscriptions, p integer,
                                                  OUT plan_id bigint, OUT plan_name text, OUT tax_free boolean,
                                                  OUT unit_amount bigint, OUT quantity integer,
                                                  OUT period_start timestamptz, OUT period_end timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_plan toss_billing.plans;
    v_current toss_billing.plans;
BEGIN
    SELECT * INTO v_current FROM toss_billing.plans pl WHERE pl.id = sub.plan_id;
    IF sub.pending_plan_id IS NOT NULL AND sub.pending_plan_period <= _terms_at.p THEN
        SELECT * INTO v_plan FROM toss_billing.plans pl WHERE pl.id = sub.pending_plan_id;
    ELSE
        v_plan := v_current;
    END IF;
    plan_id := v_plan.id;
    plan_name := v_plan.name;
    tax_free := v_plan.tax_free;
    unit_amount := CASE WHEN sub.pending_amount IS NOT NULL AND sub.pending_amount_period <= _terms_at.p
                        THEN sub.pending_amount ELSE COALESCE(sub.amount_override, v_plan.amount) END;
    quantity := CASE WHEN sub.pending_quantity IS NOT NULL AND sub.pending_quantity_period <= _terms_at.p
                     THEN sub.pending_quantity ELSE sub.quantity END;
    IF _terms_at.p = sub.period_number THEN
        period_start := sub.current_period_start;
        period_end := CASE WHEN (v_plan.interval_unit, v_plan.interval_count)
                                IS DISTINCT FROM (v_current.interval_unit, v_current.interval_count)
                           THEN toss_billing.period_start(sub.current_period_start, sub.time_zone, v_plan.interval_unit,
                                                          v_plan.interval_count, 1)
                           ELSE sub.current_period_end END;
    ELSE
        period_start := sub.current_period_end;
    END IF;
END;
$$;

-- The draft period invoice that takes a subscription's next lines (made if
-- missing and make is true; else NULL when there is none).
CREATE OR REPLACE FUNCTION toss_billing._draft_invoice(sub toss_billing.subscriptions, make boolean)
RETURNS toss_billing.invoices
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_p integer := toss_billing._next_period(sub);
    v_inv toss_billing.invoices;
BEGIN
    SELECT * INTO v_inv FROM toss_billing.invoices i
     WHERE i.subscription_id = sub.id AND i.kind = 'period' AND i.period_number = v_p;
    IF FOUND OR NOT _draft_invoice.make THEN
        RETURN v_inv;
    END IF;
    INSERT INTO toss_billing.invoices (customer_id, subscription_id, kind, period_number, status, description)
    VALUES (sub.customer_id, sub.id, 'period', v_p, 'draft',
            (SELECT pl.name FROM toss_billing.plans pl WHERE pl.id = (toss_billing._terms_at(sub, v_p)).plan_id))
    RETURNING * INTO v_inv;
    RETURN v_inv;
END;
$$;

-- The usage lines of an invoice from the usage records it bills: one line
-- per metric for the records of its window [usage_from, usage_until), and
-- one late line per metric and earlier window for older records.  A
-- metric's records are aggregated together whatever plan they were
-- recorded under, and priced by the meter of the latest record (the plan in
-- effect when the window closed).  A late line charges what its window
-- costs with the late records minus what it was billed, both priced by the
-- meter that priced the window's line (price(new aggregate) -
-- price(billed aggregate), each rounded): for sum the late quantity adds
-- up, for max and last the aggregate may change (a last value can also
-- lower it: a credit).  exclude_invoice: the invoice being finalised (its
-- own marked records are not "billed before").
CREATE OR REPLACE FUNCTION toss_billing._usage_lines(subscription_id bigint, usage_from timestamptz,
                                                     usage_until timestamptz, records toss_billing._usage_row[],
                                                     exclude_invoice bigint)
RETURNS SETOF toss_billing.invoice_line
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    g record;
    m toss_billing.plan_meters;
    v_price record;
    v_old record;
    v_meter bigint;
    v_prior bigint;
    v_new bigint;
    v_sum numeric;
    v_line toss_billing.invoice_line;
    v_hint text := 'Correct the usage records (toss_billing.usage_records: only the extension''s owner can delete '
                   'them) or the meter''s price; until then the runner defers the subscription.';
BEGIN
    -- on time: one line per metric
    FOR g IN
        SELECT pm.metric, pg_catalog.array_agg(u ORDER BY u.occurred_at DESC, u.recorded_at DESC, u.usage_key DESC) AS rows
          FROM pg_catalog.unnest(_usage_lines.records) u
          JOIN toss_billing.plan_meters pm ON pm.id = u.meter_id
         WHERE _usage_lines.usage_from IS NULL OR u.occurred_at >= _usage_lines.usage_from
         GROUP BY pm.metric
         ORDER BY pm.metric
    LOOP
        SELECT * INTO m FROM toss_billing.plan_meters pm WHERE pm.id = (g.rows[1]).meter_id;
        SELECT CASE m.aggregation WHEN 'sum' THEN pg_catalog.sum(x.quantity)
                                  WHEN 'max' THEN pg_catalog.max(x.quantity)
                                  ELSE (g.rows[1]).quantity END
          INTO v_sum FROM pg_catalog.unnest(g.rows) x;
        v_new := toss_billing._usage_quantity(v_sum, g.metric, _usage_lines.subscription_id, v_hint);
        v_price := toss_billing._meter_price(m.id, v_new);
        v_line := ROW(NULL, 'usage', m.description, _usage_lines.usage_from, _usage_lines.usage_until, v_new,
                      m.unit_amount,
                      toss_billing._invoice_amount(v_price.price, pg_catalog.format('the usage line "%s"', g.metric),
                                                   _usage_lines.subscription_id, v_hint),
                      m.tax_free, false, m.id, NULL, NULL,
                      CASE WHEN v_price.breakdown IS NOT NULL
                           THEN pg_catalog.jsonb_build_object('aggregation', m.aggregation, 'tiers', v_price.breakdown)
                           ELSE pg_catalog.jsonb_build_object('aggregation', m.aggregation) END);
        RETURN NEXT v_line;
    END LOOP;
    IF _usage_lines.usage_from IS NULL THEN
        RETURN;
    END IF;
    -- late: per metric and the earlier window each record belongs to
    FOR g IN
        SELECT pm.metric, w.id AS window_id, w.usage_from AS wf, w.usage_until AS wu,
               pg_catalog.array_agg(u ORDER BY u.occurred_at DESC, u.recorded_at DESC, u.usage_key DESC) AS rows
          FROM pg_catalog.unnest(_usage_lines.records) u
          JOIN toss_billing.plan_meters pm ON pm.id = u.meter_id
          LEFT JOIN LATERAL (SELECT i.id, i.usage_from, i.usage_until FROM toss_billing.invoices i
                              WHERE i.subscription_id = _usage_lines.subscription_id
                                AND i.kind = ANY (ARRAY['period', 'final']) AND i.status <> 'draft'
                                AND i.id IS DISTINCT FROM _usage_lines.exclude_invoice
                                AND i.usage_until > u.occurred_at
                                AND (i.usage_from IS NULL OR i.usage_from <= u.occurred_at)
                              ORDER BY i.usage_until LIMIT 1) w ON true
         WHERE u.occurred_at < _usage_lines.usage_from
         GROUP BY pm.metric, w.id, w.usage_from, w.usage_until
         ORDER BY pm.metric, w.usage_until
    LOOP
        -- the meter that priced the window's line, else the latest record's
        SELECT it.meter_id INTO v_meter
          FROM toss_billing.invoice_items it JOIN toss_billing.plan_meters pm ON pm.id = it.meter_id
         WHERE it.invoice_id = g.window_id AND it.kind = 'usage' AND NOT it.late AND pm.metric = g.metric
         LIMIT 1;
        SELECT * INTO m FROM toss_billing.plan_meters pm WHERE pm.id = COALESCE(v_meter, (g.rows[1]).meter_id);
        -- the window as billed, and with the late records
        WITH billed AS (
            SELECT x.quantity, x.occurred_at, x.recorded_at, x.usage_key, false AS is_late
              FROM toss_billing.usage_records x
              JOIN toss_billing.plan_meters pm ON pm.id = x.meter_id
             WHERE x.subscription_id = _usage_lines.subscription_id AND pm.metric = g.metric
               AND x.invoice_id IS NOT NULL AND x.invoice_id IS DISTINCT FROM _usage_lines.exclude_invoice
               AND (g.wf IS NULL OR x.occurred_at >= g.wf) AND x.occurred_at < COALESCE(g.wu, _usage_lines.usage_from)),
        all_rows AS (
            SELECT * FROM billed
            UNION ALL
            SELECT l.quantity, l.occurred_at, l.recorded_at, l.usage_key, true FROM pg_catalog.unnest(g.rows) l)
        SELECT CASE m.aggregation
                   WHEN 'sum' THEN pg_catalog.sum(a.quantity) FILTER (WHERE NOT a.is_late)
                   WHEN 'max' THEN pg_catalog.max(a.quantity) FILTER (WHERE NOT a.is_late)
                   ELSE (pg_catalog.array_agg(a.quantity ORDER BY a.occurred_at DESC, a.recorded_at DESC,
                                              a.usage_key DESC) FILTER (WHERE NOT a.is_late))[1] END,
               CASE m.aggregation
                   WHEN 'sum' THEN pg_catalog.sum(a.quantity)
                   WHEN 'max' THEN pg_catalog.max(a.quantity)
                   ELSE (pg_catalog.array_agg(a.quantity ORDER BY a.occurred_at DESC, a.recorded_at DESC,
                                              a.usage_key DESC))[1] END
          INTO v_prior, v_sum
          FROM all_rows a;
        v_new := toss_billing._usage_quantity(v_sum, g.metric, _usage_lines.subscription_id, v_hint);
        v_price := toss_billing._meter_price(m.id, v_new);
        v_old := toss_billing._meter_price(m.id, COALESCE(v_prior, 0));
        v_line := ROW(NULL, 'usage', m.description || ' (late usage)', g.wf, COALESCE(g.wu, _usage_lines.usage_from),
                      CASE WHEN m.aggregation = 'sum' THEN v_new - COALESCE(v_prior, 0) ELSE v_new END,
                      m.unit_amount,
                      toss_billing._invoice_amount(v_price.price, pg_catalog.format('the window of the late usage line "%s"', g.metric),
                                                   _usage_lines.subscription_id, v_hint)
                      - CASE WHEN v_prior IS NULL THEN 0 ELSE toss_billing._won(v_old.price) END,
                      m.tax_free, true, m.id, NULL, NULL,
                      pg_catalog.jsonb_build_object('aggregation', m.aggregation, 'window_invoice_id', g.window_id,
                                                    'billed_quantity', v_prior, 'new_quantity', v_new));
        RETURN NEXT v_line;
    END LOOP;
END;
$$;

-- Composes an invoice: its lines and totals, without writing anything.
--   sub        the subscription (as it is: changes due at the period's start
--              applied, or scheduled, which _terms_at takes into account)
--   kind       period (the open period's), final, or proration / one_off
--              (only their stored lines)
--   invoice_id the draft being finalised (its stored lines count), or NULL
--   records    the usage records it bills (period, final)
--   ahead      0: the subscription's next invoice; n > 0: a period invoice
--              n after it (_preview_period: what is known of a later period
--              now), which carries nothing (earlier invoices take what is
--              carried now) and is discounted only by a coupon with periods
--              left after the n before it
CREATE OR REPLACE FUNCTION toss_billing._compose(sub toss_billing.subscriptions, kind text, invoice_id bigint,
                                                 records toss_billing._usage_row[], now_at timestamptz,
                                                 ahead integer DEFAULT 0)
RETURNS toss_billing.invoice_preview
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r toss_billing.invoice_preview;
    t record;
    c record;
    v_lines toss_billing.invoice_line[] := '{}';
    v_base bigint;
    v_tf_base bigint;
    v_tf_all bigint;
    v_share bigint;
    v_new_recurring bigint;
    v_hint text := 'An invoice this large cannot be charged: lower what it bills (the plan''s amount or seat count, '
                   'its one-off lines, its usage); until then the runner defers the subscription.';
BEGIN
    r.subscription_id := sub.id;
    r.invoice_id := _compose.invoice_id;
    r.kind := _compose.kind;
    IF _compose.kind = 'period' THEN
        r.period_number := sub.period_number;
        t := toss_billing._terms_at(sub, sub.period_number);
        r.description := t.plan_name;
        r.period_start := t.period_start;
        r.period_end := t.period_end;
        r.plan_id := t.plan_id;
        r.unit_amount := t.unit_amount;
        r.quantity := t.quantity;
        v_lines := v_lines || ROW(NULL, 'plan', CASE WHEN t.quantity = 1 THEN t.plan_name
                                                     ELSE pg_catalog.format('%s × %s', t.plan_name, t.quantity) END,
                                  t.period_start, t.period_end, t.quantity::bigint, t.unit_amount::numeric,
                                  toss_billing._invoice_amount(t.unit_amount::numeric * t.quantity, 'the plan line',
                                                               sub.id, v_hint),
                                  t.tax_free, false, NULL, NULL, NULL,
                                  NULL)::toss_billing.invoice_line;
    ELSE
        SELECT i.description, i.period_start, i.period_end INTO r.description, r.period_start, r.period_end
          FROM toss_billing.invoices i WHERE i.id = _compose.invoice_id;
        IF r.description IS NULL THEN
            r.description := pg_catalog.left((SELECT pl.name FROM toss_billing.plans pl WHERE pl.id = sub.plan_id)
                                             || ' (final invoice)', 100);
        END IF;
    END IF;

    -- the lines stored on the draft: prorations and one-off items
    v_lines := v_lines || COALESCE((SELECT pg_catalog.array_agg(ROW(it.id, it.kind, it.description, it.period_start,
                                                                     it.period_end, it.quantity, it.unit_amount, it.amount,
                                                                     it.tax_free, it.late, it.meter_id, it.coupon_id,
                                                                     it.source_invoice_id, it.detail)::toss_billing.invoice_line
                                                                 ORDER BY it.id)
                                      FROM toss_billing.invoice_items it
                                     WHERE it.invoice_id = _compose.invoice_id
                                       AND it.kind = ANY (ARRAY['proration', 'one_off'])), '{}');

    IF _compose.kind = ANY (ARRAY['period', 'final']) THEN
        -- usage: the window since the last finalised invoice's
        r.usage_from := (SELECT pg_catalog.max(i.usage_until) FROM toss_billing.invoices i
                          WHERE i.subscription_id = sub.id AND i.kind = ANY (ARRAY['period', 'final'])
                            AND i.status <> 'draft' AND i.id IS DISTINCT FROM _compose.invoice_id);
        r.usage_until := CASE WHEN _compose.kind = 'period' THEN sub.current_period_start
                              ELSE GREATEST(COALESCE(sub.canceled_at, _compose.now_at), _compose.now_at,
                                            (SELECT pg_catalog.max(u.occurred_at) + interval '1 microsecond'
                                               FROM pg_catalog.unnest(_compose.records) u)) END;
        IF r.usage_from >= r.usage_until THEN
            r.usage_from := NULL;
        END IF;
        v_lines := v_lines || COALESCE((SELECT pg_catalog.array_agg(l)
                                          FROM toss_billing._usage_lines(sub.id, r.usage_from, r.usage_until,
                                                                         _compose.records, _compose.invoice_id) l), '{}');
        -- what earlier invoices could not charge (on the next invoice)
        v_lines := v_lines || COALESCE((SELECT pg_catalog.array_agg(ROW(NULL, 'carried',
                                                                         CASE WHEN i.status = 'void'
                                                                              THEN pg_catalog.format('Unpaid invoice %s (its charge failed)', i.id)
                                                                              WHEN i.carried_forward > 0
                                                                              THEN pg_catalog.format('Carried from invoice %s (below the minimum charge of 100 KRW)', i.id)
                                                                              ELSE pg_catalog.format('Credit carried from invoice %s', i.id) END,
                                                                         NULL, NULL, 1, NULL, i.carried_forward,
                                                                         NOT EXISTS (SELECT FROM toss_billing.invoice_items x
                                                                                      WHERE x.invoice_id = i.id AND NOT x.tax_free
                                                                                        AND x.kind <> 'discount' AND x.amount <> 0),
                                                                         false, NULL, NULL, i.id, NULL)::toss_billing.invoice_line
                                                                     ORDER BY i.id)
                                          FROM toss_billing.invoices i
                                         WHERE i.subscription_id = sub.id AND i.carried_forward <> 0
                                           AND i.carried_into_invoice_id IS NULL
                                           AND i.status = ANY (ARRAY['paid', 'void'])
                                           AND i.id IS DISTINCT FROM _compose.invoice_id
                                           AND COALESCE(_compose.ahead, 0) = 0), '{}');
    END IF;

    IF _compose.kind = 'period' THEN
        r.coupon_id := toss_billing._coupon_for_next(sub.id, _compose.ahead);
        -- the consent rule (34_consent): whether the recurring amount rose,
        -- and what holds if it did without consent
        c := toss_billing._consent_for(sub, sub.period_number, t.unit_amount, t.quantity, r.coupon_id);
        r.consent := c.outcome;
        r.consent_requirement_id := c.requirement_id;
        IF c.outcome = 'canceled' THEN
            -- no period: what the subscription still owes, on a final invoice
            r := toss_billing._compose(sub, 'final', _compose.invoice_id, _compose.records, _compose.now_at,
                                       _compose.ahead);
            r.consent := c.outcome;
            r.consent_requirement_id := c.requirement_id;
            RETURN r;
        END IF;
        v_new_recurring := t.unit_amount * t.quantity - toss_billing._coupon_discount(r.coupon_id, t.unit_amount * t.quantity);
        IF c.outcome = 'kept_old_amount' THEN
            v_lines := v_lines || ROW(NULL, 'consent_adjustment',
                                      pg_catalog.format('Previous price kept: the increase from %s to %s KRW has no valid consent',
                                                        c.old_amount, c.new_amount),
                                      t.period_start, t.period_end, 1, NULL, c.old_amount - c.new_amount, t.tax_free,
                                      false, NULL, NULL, NULL,
                                      pg_catalog.jsonb_build_object('requirement_id', c.requirement_id))::toss_billing.invoice_line;
            r.recurring_amount := c.old_amount;
            r.agreed_unit_amount := c.old_unit_amount;
            r.agreed_coupon_id := c.old_coupon_id;
        ELSE
            r.recurring_amount := v_new_recurring;
            r.agreed_unit_amount := t.unit_amount;
            r.agreed_coupon_id := r.coupon_id;
        END IF;
        -- one discount line, on what the invoice charges for (not on carried
        -- amounts or the consent adjustment); never below 0
        IF r.coupon_id IS NOT NULL THEN
            SELECT COALESCE(pg_catalog.sum(l.amount), 0) INTO v_base FROM pg_catalog.unnest(v_lines) l
             WHERE l.kind = ANY (ARRAY['plan', 'proration', 'usage', 'one_off']);
            r.discount := toss_billing._coupon_discount(r.coupon_id, v_base);
            IF r.discount > 0 THEN
                v_lines := v_lines || ROW(NULL, 'discount',
                                          (SELECT pg_catalog.format('Coupon %s (%s)', cp.code,
                                                                    CASE WHEN cp.percent_off IS NOT NULL
                                                                         THEN pg_catalog.trim_scale(cp.percent_off)::text || '% off'
                                                                         ELSE cp.amount_off || ' KRW off' END)
                                             FROM toss_billing.coupons cp WHERE cp.id = r.coupon_id),
                                          NULL, NULL, 1, NULL, -r.discount, false, false, NULL, r.coupon_id, NULL,
                                          NULL)::toss_billing.invoice_line;
            END IF;
        END IF;
    END IF;

    r.lines := v_lines;
    SELECT toss_billing._invoice_amount(COALESCE(pg_catalog.sum(l.amount) FILTER (WHERE l.kind <> 'discount'), 0),
                                        'the subtotal', sub.id, v_hint),
           COALESCE(-pg_catalog.sum(l.amount) FILTER (WHERE l.kind = 'discount'), 0),
           COALESCE(pg_catalog.sum(l.amount) FILTER (WHERE l.kind = ANY (ARRAY['plan', 'proration', 'usage', 'one_off'])), 0),
           COALESCE(pg_catalog.sum(l.amount) FILTER (WHERE l.tax_free AND l.kind = ANY (ARRAY['plan', 'proration', 'usage', 'one_off'])), 0),
           COALESCE(pg_catalog.sum(l.amount) FILTER (WHERE l.tax_free AND l.kind <> 'discount'), 0)
      INTO r.subtotal, r.discount, v_base, v_tf_base, v_tf_all
      FROM pg_catalog.unnest(v_lines) l;
    r.total := r.subtotal - r.discount;
    r.carried_forward := CASE WHEN r.total BETWEEN 1 AND 99 OR r.total < 0 THEN r.total ELSE 0 END;
    r.amount_due := r.total - r.carried_forward;
    -- the discount's share of the tax-free lines, in proportion
    v_share := CASE WHEN v_base > 0 AND v_tf_base > 0 THEN toss_billing._won(r.discount::numeric * v_tf_base / v_base) ELSE 0 END;
    r.tax_free_amount := CASE WHEN r.amount_due = 0 THEN 0 ELSE LEAST(GREATEST(v_tf_all - v_share, 0), r.amount_due) END;
    RETURN r;
END;
$$;

-- Writes a composed invoice: its computed lines (the stored ones are there
-- already), totals and status: open (amount_due >= 100; a non-period
-- invoice is due at once), or paid with nothing to charge (total 0, or a
-- total carried forward).  Marks the carried invoices as carried into it.
CREATE OR REPLACE FUNCTION toss_billing._write_invoice(invoice_id bigint, inv toss_billing.invoice_preview,
                                                       now_at timestamptz)
RETURNS toss_billing.invoices
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_inv toss_billing.invoices;
    v_sub toss_billing.subscriptions;
BEGIN
    SELECT * INTO v_sub FROM toss_billing.subscriptions s WHERE s.id = inv.subscription_id;
    INSERT INTO toss_billing.invoice_items (invoice_id, customer_id, subscription_id, kind, description, period_start,
                                            period_end, quantity, unit_amount, amount, tax_free, late, meter_id,
                                            coupon_id, source_invoice_id, detail)
    SELECT _write_invoice.invoice_id, v_sub.customer_id, v_sub.id, l.kind, pg_catalog.left(l.description, 300),
           l.period_start, l.period_end, l.quantity, l.unit_amount, l.amount, l.tax_free, l.late, l.meter_id,
           l.coupon_id, l.source_invoice_id, l.detail
      FROM pg_catalog.unnest(inv.lines) WITH ORDINALITY AS l
     WHERE l.item_id IS NULL
     ORDER BY l.ordinality;
    UPDATE toss_billing.invoices i
       SET kind = inv.kind, period_number = inv.period_number, description = pg_catalog.left(inv.description, 100),
           period_start = inv.period_start, period_end = inv.period_end,
           usage_from = inv.usage_from, usage_until = inv.usage_until, plan_id = inv.plan_id,
           unit_amount = inv.unit_amount, quantity = inv.quantity, coupon_id = inv.coupon_id,
           agreed_unit_amount = inv.agreed_unit_amount, agreed_coupon_id = inv.agreed_coupon_id,
           subtotal = inv.subtotal, discount = inv.discount, total = inv.total,
           carried_forward = inv.carried_forward, amount_due = inv.amount_due, tax_free_amount = inv.tax_free_amount,
           recurring_amount = inv.recurring_amount, consent = inv.consent,
           status = CASE WHEN inv.amount_due = 0 THEN 'paid' ELSE 'open' END,
           status_reason = CASE WHEN inv.amount_due > 0 THEN NULL
                                WHEN inv.total = 0 THEN 'nothing to charge'
                                WHEN inv.total > 0 THEN 'below the minimum charge of 100 KRW: carried to the next invoice'
                                ELSE 'a credit: carried to the next invoice' END,
           next_attempt_at = CASE WHEN inv.amount_due > 0 AND inv.kind <> 'period' THEN _write_invoice.now_at END,
           finalized_at = _write_invoice.now_at,
           paid_at = CASE WHEN inv.amount_due = 0 THEN _write_invoice.now_at END,
           updated_at = pg_catalog.now()
     WHERE i.id = _write_invoice.invoice_id
    RETURNING * INTO v_inv;
    UPDATE toss_billing.invoices i SET carried_into_invoice_id = _write_invoice.invoice_id, updated_at = pg_catalog.now()
      FROM pg_catalog.unnest(inv.lines) l
     WHERE l.kind = 'carried' AND i.id = l.source_invoice_id AND i.carried_into_invoice_id IS NULL;
    IF v_inv.kind <> 'period' AND v_inv.amount_due = 0 THEN
        PERFORM toss_billing._event(v_sub.id, 'invoice_paid', v_sub.status, v_sub.status, v_inv.status_reason,
                                    _write_invoice.now_at,
                                    pg_catalog.jsonb_build_object('invoice_id', v_inv.id, 'kind', v_inv.kind,
                                                                  'total', v_inv.total,
                                                                  'carried_forward', v_inv.carried_forward));
    END IF;
    RETURN v_inv;
END;
$$;

-- The invoice of a subscription's period p as it would be finalised now,
-- without writing anything (preview_invoice, _next_amount).  p the next
-- invoice's period (_next_period): its draft's lines, the plan line, the
-- usage recorded so far, carried amounts, the discount and the consent
-- rule's outcome.  p a later period: what is known of it now -- the plan
-- line at the terms scheduled for it, the discount of a coupon that still
-- has periods left then, the consent rule against the invoices finalised
-- so far -- but no usage, one-off items or carried amounts (not known yet,
-- or the invoices before it take them).
-- NULL for a period before the next invoice's (finalised already).
CREATE OR REPLACE FUNCTION toss_billing._preview_period(sub toss_billing.subscriptions, p integer)
RETURNS toss_billing.invoice_preview
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := toss_billing.subscription_now(sub.id);
    v_next integer := toss_billing._next_period(sub);
    v_unit text;
    v_count integer;
    v_draft bigint;
    v_records toss_billing._usage_row[];
BEGIN
    IF _preview_period.p IS NULL OR _preview_period.p < v_next THEN
        RETURN NULL;
    END IF;
    -- a period after the open one: seen from its start
    IF _preview_period.p > sub.period_number THEN
        SELECT pl.interval_unit, pl.interval_count INTO v_unit, v_count
          FROM toss_billing.plans pl WHERE pl.id = (toss_billing._terms_at(sub, _preview_period.p)).plan_id;
        sub.current_period_start := CASE WHEN _preview_period.p = sub.period_number + 1 THEN sub.current_period_end
                                         ELSE toss_billing.period_start(sub.billing_anchor, sub.time_zone, v_unit, v_count,
                                                                        _preview_period.p - sub.anchor_period) END;
        sub.current_period_end := toss_billing.period_start(sub.billing_anchor, sub.time_zone, v_unit, v_count,
                                                            _preview_period.p + 1 - sub.anchor_period);
        sub.period_number := _preview_period.p;
    END IF;
    IF _preview_period.p > v_next THEN
        RETURN toss_billing._compose(sub, 'period', NULL, '{}', v_now, _preview_period.p - v_next);
    END IF;
    SELECT i.id INTO v_draft FROM toss_billing.invoices i
     WHERE i.subscription_id = sub.id AND i.kind = 'period' AND i.period_number = _preview_period.p
       AND i.status = 'draft';
    SELECT pg_catalog.array_agg(ROW(u.meter_id, u.quantity, u.occurred_at, u.recorded_at, u.usage_key)::toss_billing._usage_row)
      INTO v_records
      FROM toss_billing.usage_records u
     WHERE u.subscription_id = sub.id AND u.invoice_id IS NULL AND u.occurred_at < sub.current_period_start;
    RETURN toss_billing._compose(sub, 'period', v_draft, COALESCE(v_records, '{}'), v_now);
END;
$$;

-- The next invoice of a subscription as it would be finalised now
-- (Stripe's upcoming invoice): its draft's lines, the plan line, the usage
-- recorded so far, carried amounts, the discount and the consent rule's
-- outcome (_preview_period).  Writes nothing (SECURITY DEFINER only to read
-- what operators and auditors may not call themselves).
CREATE OR REPLACE FUNCTION toss_billing.preview_invoice(subscription_id bigint)
RETURNS toss_billing.invoice_preview
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions;
BEGIN
    IF preview_invoice.subscription_id IS NULL THEN
        RAISE EXCEPTION 'subscription_id must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO v_sub FROM toss_billing.subscriptions s WHERE s.id = preview_invoice.subscription_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription % does not exist', preview_invoice.subscription_id USING ERRCODE = 'P0002';
    END IF;
    IF v_sub.status = 'canceled' THEN
        RAISE EXCEPTION 'subscription % is canceled', v_sub.id USING ERRCODE = '55000',
            DETAIL = 'A canceled subscription has no next invoice; its final invoice is in toss_billing.invoices.';
    END IF;
    RETURN toss_billing._preview_period(v_sub, toss_billing._next_period(v_sub));
END;
$$;

-- What a subscription's period (the open one by default) will be charged,
-- the one function that says it (95_reporting's subscription_info,
-- upcoming_renewals and dunning follow it): the amount_due of
-- the period's invoice -- as finalised (0 when it was voided: what it owed
-- went on to a later invoice), else as it would be finalised now, computed
-- as preview_invoice computes it (_preview_period: for a period after the
-- next invoice's, what is known of it now).  NULL for a period that has no
-- invoice and will not have one (before the open period, or of a canceled
-- subscription).  Writes nothing.
CREATE OR REPLACE FUNCTION toss_billing._next_amount(subscription_id bigint, period_number integer DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions;
    v_period integer;
    v_inv toss_billing.invoices;
BEGIN
    IF _next_amount.subscription_id IS NULL THEN
        RAISE EXCEPTION 'subscription_id must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO v_sub FROM toss_billing.subscriptions s WHERE s.id = _next_amount.subscription_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription % does not exist', _next_amount.subscription_id USING ERRCODE = 'P0002';
    END IF;
    v_period := COALESCE(_next_amount.period_number, v_sub.period_number);
    IF v_period < 0 THEN
        RAISE EXCEPTION 'period_number must not be negative' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_inv FROM toss_billing.invoices i
     WHERE i.subscription_id = v_sub.id AND i.kind = 'period' AND i.period_number = v_period AND i.status <> 'draft';
    IF FOUND THEN
        RETURN CASE WHEN v_inv.status = 'void' THEN 0 ELSE v_inv.amount_due END;
    END IF;
    IF v_sub.status = 'canceled' OR v_period < v_sub.period_number THEN
        RETURN NULL;
    END IF;
    RETURN (toss_billing._preview_period(v_sub, v_period)).amount_due;
END;
$$;

-- Adds a one-off line to a subscription's next invoice: amount is the price
-- of one unit (KRW; negative for a credit), the line is amount x quantity.
-- With an idempotency_key, the same call again returns the same line (and a
-- different line under the same key is refused).
CREATE OR REPLACE FUNCTION toss_billing.add_invoice_item(
    subscription_id bigint,
    amount bigint,
    description text,
    quantity integer DEFAULT 1,
    tax_free boolean DEFAULT false,
    idempotency_key text DEFAULT NULL)
RETURNS toss_billing.invoice_items
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions;
    v_inv toss_billing.invoices;
    v_item toss_billing.invoice_items;
BEGIN
    IF add_invoice_item.subscription_id IS NULL OR add_invoice_item.amount IS NULL
       OR add_invoice_item.description IS NULL OR add_invoice_item.quantity IS NULL
       OR add_invoice_item.tax_free IS NULL THEN
        RAISE EXCEPTION 'subscription_id, amount, description, quantity and tax_free must not be null'
            USING ERRCODE = '22004';
    END IF;
    IF add_invoice_item.amount = 0 OR pg_catalog.abs(add_invoice_item.amount) > toss_billing._max_price() THEN
        RAISE EXCEPTION 'amount must be a non-zero number of won of at most % either way',
            pg_catalog.to_char(toss_billing._max_price(), 'FM9,999,999,999,999') USING ERRCODE = '22023';
    END IF;
    IF add_invoice_item.quantity NOT BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION 'quantity must be between 1 and 1000000' USING ERRCODE = '22023';
    END IF;
    IF pg_catalog.abs(add_invoice_item.amount * add_invoice_item.quantity) > toss_billing._max_price() THEN
        RAISE EXCEPTION 'the line would be more than % KRW either way',
            pg_catalog.to_char(toss_billing._max_price(), 'FM9,999,999,999,999') USING ERRCODE = '22023';
    END IF;
    IF add_invoice_item.description = '' OR pg_catalog.char_length(add_invoice_item.description) > 200
       OR add_invoice_item.description ~ '[\x01-\x1f\x7f]' THEN
        RAISE EXCEPTION 'description must be 1 to 200 characters without control characters' USING ERRCODE = '22023';
    END IF;
    IF pg_catalog.char_length(add_invoice_item.idempotency_key) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'idempotency_key must be 1 to 255 characters' USING ERRCODE = '22023';
    END IF;
    v_sub := toss_billing._lock_subscription(add_invoice_item.subscription_id);
    IF add_invoice_item.idempotency_key IS NOT NULL THEN
        SELECT * INTO v_item FROM toss_billing.invoice_items it
         WHERE it.subscription_id = v_sub.id AND it.item_key = add_invoice_item.idempotency_key;
        IF FOUND THEN
            IF v_item.kind = 'one_off' AND v_item.unit_amount = add_invoice_item.amount
               AND v_item.quantity = add_invoice_item.quantity AND v_item.description = add_invoice_item.description
               AND v_item.tax_free = add_invoice_item.tax_free THEN
                RETURN v_item;
            END IF;
            RAISE EXCEPTION 'idempotency key "%" was used for another invoice item', add_invoice_item.idempotency_key
                USING ERRCODE = '23505',
                      DETAIL = pg_catalog.format('That item is %s x %s KRW for "%s".', v_item.quantity, v_item.unit_amount,
                                                 v_item.description);
        END IF;
    END IF;
    IF v_sub.status = 'canceled' THEN
        RAISE EXCEPTION 'subscription % is canceled', v_sub.id USING ERRCODE = '55000',
            DETAIL = 'A canceled subscription has no next invoice.';
    END IF;
    v_inv := toss_billing._draft_invoice(v_sub, true);
    IF v_inv.status <> 'draft' THEN
        RAISE EXCEPTION 'the next invoice of subscription % is already finalised', v_sub.id USING ERRCODE = '55000';
    END IF;
    INSERT INTO toss_billing.invoice_items (invoice_id, customer_id, subscription_id, kind, description, quantity,
                                            unit_amount, amount, tax_free, item_key)
    VALUES (v_inv.id, v_sub.customer_id, v_sub.id, 'one_off', add_invoice_item.description, add_invoice_item.quantity,
            add_invoice_item.amount, add_invoice_item.amount * add_invoice_item.quantity, add_invoice_item.tax_free,
            add_invoice_item.idempotency_key)
    RETURNING * INTO v_item;
    RETURN v_item;
END;
$$;

-- Removes a one-off line from a draft invoice; returns whether it did.
CREATE OR REPLACE FUNCTION toss_billing.delete_invoice_item(item_id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_item toss_billing.invoice_items;
    v_status text;
BEGIN
    IF delete_invoice_item.item_id IS NULL THEN
        RAISE EXCEPTION 'item_id must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO v_item FROM toss_billing.invoice_items it WHERE it.id = delete_invoice_item.item_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invoice item % does not exist', delete_invoice_item.item_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM toss_billing._lock_subscription(v_item.subscription_id);
    SELECT i.status INTO v_status FROM toss_billing.invoices i WHERE i.id = v_item.invoice_id FOR UPDATE;
    IF v_status <> 'draft' OR v_item.kind <> 'one_off' THEN
        RAISE EXCEPTION 'invoice item % can no longer be removed', v_item.id USING ERRCODE = '55000',
            DETAIL = 'Only one-off lines of a draft invoice can be removed.';
    END IF;
    DELETE FROM toss_billing.invoice_items it WHERE it.id = v_item.id;
    RETURN true;
END;
$$;

-- Finalises a non-period draft invoice (its stored lines): open and due at
-- once, or paid with nothing to charge.
CREATE OR REPLACE FUNCTION toss_billing._finalize_invoice(invoice_id bigint)
RETURNS toss_billing.invoices
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_inv toss_billing.invoices;
    v_sub toss_billing.subscriptions;
    v_now timestamptz;
BEGIN
    SELECT * INTO v_inv FROM toss_billing.invoices i WHERE i.id = _finalize_invoice.invoice_id FOR UPDATE;
    SELECT * INTO v_sub FROM toss_billing.subscriptions s WHERE s.id = v_inv.subscription_id;
    v_now := toss_billing.subscription_now(v_sub.id);
    RETURN toss_billing._write_invoice(v_inv.id, toss_billing._compose(v_sub, v_inv.kind, v_inv.id, '{}', v_now), v_now);
END;
$$;

-- Finalises the open period's invoice of a due subscription (locked by the
-- caller): the usage it bills is marked with the invoice first and the
-- lines are composed from exactly the marked records, so a record recorded
-- meanwhile is billed by the next invoice (as late usage), never twice and
-- never not at all.  Applies the consent rule; a total of 0 or one carried
-- forward settles the period at once.  Returns the invoice (NULL when it
-- was finalised already).
CREATE OR REPLACE FUNCTION toss_billing._finalize_period_invoice(subscription_id bigint)
RETURNS toss_billing.invoices
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions;
    v_now timestamptz;
    v_inv toss_billing.invoices;
    v_records toss_billing._usage_row[];
    v_more toss_billing._usage_row[];
    r toss_billing.invoice_preview;
    v_from text;
BEGIN
    SELECT * INTO v_sub FROM toss_billing.subscriptions s WHERE s.id = _finalize_period_invoice.subscription_id FOR UPDATE;
    v_now := toss_billing.subscription_now(v_sub.id);
    SELECT * INTO v_inv FROM toss_billing.invoices i
     WHERE i.subscription_id = v_sub.id AND i.kind = 'period' AND i.period_number = v_sub.period_number
       FOR UPDATE;
    IF FOUND AND v_inv.status <> 'draft' THEN
        RETURN NULL;
    END IF;
    IF NOT FOUND THEN
        v_inv := toss_billing._draft_invoice(v_sub, true);
    END IF;
    -- the requirement the consent rule checks (made now if no change made it)
    PERFORM toss_billing._review_consent(v_sub.id);
    WITH marked AS (
        UPDATE toss_billing.usage_records u SET invoice_id = v_inv.id
         WHERE u.subscription_id = v_sub.id AND u.invoice_id IS NULL AND u.occurred_at < v_sub.current_period_start
        RETURNING u.meter_id, u.quantity, u.occurred_at, u.recorded_at, u.usage_key)
    SELECT pg_catalog.array_agg(ROW(m.meter_id, m.quantity, m.occurred_at, m.recorded_at, m.usage_key)::toss_billing._usage_row)
      INTO v_records FROM marked m;
    r := toss_billing._compose(v_sub, 'period', v_inv.id, COALESCE(v_records, '{}'), v_now);

    IF r.consent = 'canceled' THEN
        -- the increase would take effect now without a valid consent: the
        -- subscription ends here, and what it owes goes on a final invoice
        v_from := v_sub.status;
        UPDATE toss_billing.subscriptions s
           SET status = 'canceled', canceled_at = s.current_period_start, next_charge_at = NULL,
               cancel_at_period_end = false, cancel_at = NULL,
               pending_plan_id = NULL, pending_plan_period = NULL, pending_quantity = NULL,
               pending_quantity_period = NULL, pending_amount = NULL, pending_amount_period = NULL,
               updated_at = pg_catalog.now()
         WHERE s.id = v_sub.id
        RETURNING * INTO v_sub;
        UPDATE toss_billing.payments p
           SET state = 'failed', failure_message = 'the subscription was canceled: a price increase had no valid consent',
               updated_at = pg_catalog.now()
         WHERE p.subscription_id = v_sub.id AND p.state = 'pending';
        UPDATE toss_billing.consent_requirements cr
           SET status = 'missing', fallback = 'canceled', invoice_id = v_inv.id, resolved_at = v_now,
               updated_at = pg_catalog.now()
         WHERE cr.id = r.consent_requirement_id;
        PERFORM toss_billing._event(v_sub.id, 'consent_missing', v_from, 'canceled',
                                    'no valid consent to the price increase: the subscription is canceled', v_now,
                                    pg_catalog.jsonb_build_object('requirement_id', r.consent_requirement_id,
                                                                  'invoice_id', v_inv.id));
        PERFORM toss_billing._event(v_sub.id, 'status_changed', v_from, 'canceled',
                                    'canceled: a price increase had no valid consent', v_now);
        WITH marked AS (
            UPDATE toss_billing.usage_records u SET invoice_id = v_inv.id
             WHERE u.subscription_id = v_sub.id AND u.invoice_id IS NULL
            RETURNING u.meter_id, u.quantity, u.occurred_at, u.recorded_at, u.usage_key)
        SELECT pg_catalog.array_agg(ROW(m.meter_id, m.quantity, m.occurred_at, m.recorded_at, m.usage_key)::toss_billing._usage_row)
          INTO v_more FROM marked m;
        UPDATE toss_billing.invoices i SET kind = 'final', period_number = NULL WHERE i.id = v_inv.id;
        r := toss_billing._compose(v_sub, 'final', v_inv.id, COALESCE(v_records, '{}') || COALESCE(v_more, '{}'), v_now);
        r.consent := 'canceled';
        IF pg_catalog.cardinality(r.lines) = 0 THEN
            UPDATE toss_billing.invoices i
               SET status = 'void', consent = 'canceled', voided_at = v_now, finalized_at = v_now,
                   status_reason = 'nothing to bill: the subscription was canceled before it owed anything',
                   updated_at = pg_catalog.now()
             WHERE i.id = v_inv.id
            RETURNING * INTO v_inv;
        ELSE
            v_inv := toss_billing._write_invoice(v_inv.id, r, v_now);
        END IF;
        PERFORM toss_billing._close_invoices(ARRAY[v_sub.id], 'the subscription was canceled: a price increase had no valid consent');
        RETURN v_inv;
    END IF;

    v_inv := toss_billing._write_invoice(v_inv.id, r, v_now);
    -- the coupon counts the period it discounted
    IF r.coupon_id IS NOT NULL THEN
        UPDATE toss_billing.coupon_redemptions cr
           SET periods_applied = cr.periods_applied + 1,
               status = CASE WHEN c.duration = 'forever' THEN 'active'
                             WHEN cr.periods_applied + 1 >= CASE WHEN c.duration = 'once' THEN 1 ELSE c.duration_periods END
                             THEN 'ended' ELSE 'active' END,
               ended_at = CASE WHEN c.duration <> 'forever'
                                    AND cr.periods_applied + 1 >= CASE WHEN c.duration = 'once' THEN 1 ELSE c.duration_periods END
                               THEN v_now END
          FROM toss_billing.coupons c
         WHERE c.id = cr.coupon_id AND cr.subscription_id = v_sub.id AND cr.status = 'active';
    END IF;
    IF r.consent_requirement_id IS NOT NULL THEN
        UPDATE toss_billing.consent_requirements cr
           SET status = CASE WHEN r.consent = 'kept_old_amount' THEN 'missing' ELSE cr.status END,
               fallback = CASE WHEN r.consent = 'kept_old_amount' THEN 'kept_old_amount' END,
               invoice_id = v_inv.id, resolved_at = v_now, updated_at = pg_catalog.now()
         WHERE cr.id = r.consent_requirement_id;
        IF r.consent = 'kept_old_amount' THEN
            PERFORM toss_billing._event(v_sub.id, 'consent_missing', v_sub.status, v_sub.status,
                                        'no valid consent to the price increase: the previous amount is charged', v_now,
                                        pg_catalog.jsonb_build_object('requirement_id', r.consent_requirement_id,
                                                                      'invoice_id', v_inv.id,
                                                                      'recurring_amount', r.recurring_amount));
        END IF;
    END IF;
    IF v_inv.amount_due = 0 THEN
        -- nothing to ask Toss for: the period is settled as paid
        PERFORM toss_billing._settle_paid(ARRAY[ROW(NULL, NULL, v_sub.id, v_sub.period_number, NULL, 0, 'no_charge', 'done',
                                                    NULL, NULL, v_inv.status_reason, NULL, false)::toss_billing._outcome]);
        PERFORM toss_billing._apply_transitions(ARRAY[v_sub.id]);
    END IF;
    -- the next period's requirement, if its recurring amount rises
    PERFORM toss_billing._review_consent(v_sub.id);
    RETURN v_inv;
END;
$$;

-- Finalises, set-based, the plain period invoices among these due
-- subscriptions (locked by the caller, in this order), and returns the
-- subscriptions whose invoice it finalised; the others are left for
-- _finalize_period_invoice.  A plain invoice is one whose only line is the
-- plan's: no draft of the period yet (so no proration or one-off lines), no
-- usage to bill, nothing carried, no coupon, no price terms scheduled, and
-- nothing for the consent rule to do (no increase over the baseline, no
-- requirement open), with a total of at least 100 KRW.  For these
-- _finalize_period_invoice would write exactly this same invoice and line
-- and nothing else (pg_regress 65_invoices compares the two on twins); here
-- it costs two statements for the whole claim instead of some thirty per
-- invoice.  Raises if any row fails: the caller then finalises each alone.
CREATE OR REPLACE FUNCTION toss_billing._finalize_plain(subscription_ids bigint[])
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rule_off boolean := (SELECT ip.consent_rule FROM toss_billing.invoice_policy ip) = 'off';
    v_now timestamptz := toss_billing.now();
    v_done bigint[];
BEGIN
    WITH plain AS (
        SELECT s.id, s.customer_id, s.period_number, s.current_period_start, s.current_period_end, s.quantity,
               COALESCE(s.amount_override, pl.amount) AS unit_amount, pl.id AS plan_id, pl.name AS plan_name,
               -- the subscription's clock (subscription_now)
               pl.tax_free, COALESCE(tc.now_at, v_now) AS now_at, uf.usage_from, u.ord
          FROM pg_catalog.unnest(_finalize_plain.subscription_ids) WITH ORDINALITY AS u(id, ord)
          JOIN toss_billing.subscriptions s ON s.id = u.id
          JOIN toss_billing.plans pl ON pl.id = s.plan_id
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
          -- the consent rule's baseline (_consent_baseline)
          LEFT JOIN LATERAL (SELECT i.agreed_unit_amount, i.agreed_coupon_id
                               FROM toss_billing.invoices i
                              WHERE i.subscription_id = s.id AND i.kind = 'period'
                                AND i.period_number < s.period_number
                                AND i.status = ANY (ARRAY['paid', 'open', 'uncollectible'])
                                AND i.agreed_unit_amount IS NOT NULL
                              ORDER BY i.period_number DESC
                              LIMIT 1) b ON true
          -- the usage window's start (_compose)
          CROSS JOIN LATERAL (SELECT pg_catalog.max(i.usage_until) AS usage_from
                                FROM toss_billing.invoices i
                               WHERE i.subscription_id = s.id AND i.kind = ANY (ARRAY['period', 'final'])
                                 AND i.status <> 'draft') uf
         WHERE s.status <> 'canceled'
           AND s.pending_plan_id IS NULL AND s.pending_quantity IS NULL AND s.pending_amount IS NULL
           AND COALESCE(s.amount_override, pl.amount) * s.quantity >= 100
           AND NOT EXISTS (SELECT FROM toss_billing.invoices i
                            WHERE i.subscription_id = s.id AND i.kind = 'period' AND i.period_number = s.period_number)
           AND NOT EXISTS (SELECT FROM toss_billing.usage_records r
                            WHERE r.subscription_id = s.id AND r.invoice_id IS NULL
                              AND r.occurred_at < s.current_period_start)
           AND NOT EXISTS (SELECT FROM toss_billing.invoices i
                            WHERE i.subscription_id = s.id AND i.carried_forward <> 0
                              AND i.carried_into_invoice_id IS NULL)
           AND NOT EXISTS (SELECT FROM toss_billing.coupon_redemptions r
                            WHERE r.subscription_id = s.id AND r.status = 'active')
           AND NOT EXISTS (SELECT FROM toss_billing.consent_requirements cr
                            WHERE cr.subscription_id = s.id AND cr.status = ANY (ARRAY['pending', 'consented'])
                              AND cr.invoice_id IS NULL)
           -- no increase: the rule is off, a first period without a trial
           -- (no baseline), or not above the baseline's terms
           AND (v_rule_off
                OR (b.agreed_unit_amount IS NULL AND s.trial_end IS NULL)
                OR (b.agreed_coupon_id IS NULL
                    AND COALESCE(s.amount_override, pl.amount) <= b.agreed_unit_amount))),
    made AS (
        INSERT INTO toss_billing.invoices AS i
               (customer_id, subscription_id, kind, period_number, status, description, period_start, period_end,
                usage_from, usage_until, plan_id, unit_amount, quantity, agreed_unit_amount, subtotal, total,
                amount_due, tax_free_amount, recurring_amount, consent, finalized_at)
        SELECT p.customer_id, p.id, 'period', p.period_number, 'open', p.plan_name, p.current_period_start,
               p.current_period_end,
               CASE WHEN p.usage_from < p.current_period_start THEN p.usage_from END, p.current_period_start,
               p.plan_id, p.unit_amount, p.quantity, p.unit_amount, p.unit_amount * p.quantity,
               p.unit_amount * p.quantity, p.unit_amount * p.quantity,
               CASE WHEN p.tax_free THEN p.unit_amount * p.quantity ELSE 0 END, p.unit_amount * p.quantity,
               'not_needed', p.now_at
          FROM plain p
         ORDER BY p.ord
        RETURNING i.id, i.subscription_id),
    lines AS (
        INSERT INTO toss_billing.invoice_items (invoice_id, customer_id, subscription_id, kind, description,
                                                period_start, period_end, quantity, unit_amount, amount, tax_free)
        SELECT m.id, p.customer_id, p.id, 'plan',
               CASE WHEN p.quantity = 1 THEN p.plan_name ELSE pg_catalog.format('%s × %s', p.plan_name, p.quantity) END,
               p.current_period_start, p.current_period_end, p.quantity, p.unit_amount, p.unit_amount * p.quantity,
               p.tax_free
          FROM made m JOIN plain p ON p.id = m.subscription_id
         ORDER BY m.id)
    SELECT pg_catalog.array_agg(m.subscription_id) INTO v_done FROM made m;
    RETURN COALESCE(v_done, '{}');
END;
$$;

-- Finalises up to max_count period invoices that are due: the
-- subscription's charge is due on its clock, its period started at least
-- the grace period ago, and the period's invoice is not finalised yet;
-- those the runner can charge (an active billing key) first, in the claim's
-- order, then as many of those it cannot (a total of 0 needs no card).
-- The plain ones together (_finalize_plain), the others each in a
-- subtransaction of its own (all of them so if the plain ones fail
-- together): one that fails is skipped with an alert and the others go on.
-- A subscription whose invoice failed is deferred (_defer_subscription:
-- tried again after a back-off), so that failing subscriptions never fill
-- the count ahead of due ones behind them, run after run; their places are
-- filled from behind at once (at most 4 x max_count failures a call).
-- Returns how many were finalised.
-- only_subscription: that subscription's alone, without waiting for the
-- grace window (charge_subscription_now: its charge is asked for now), and
-- an error is raised to the caller rather than recorded as an alert.
CREATE OR REPLACE FUNCTION toss_billing._finalize_due(max_count integer, only_subscription bigint DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := toss_billing.now();
    v_horizon timestamptz := GREATEST(v_now, (SELECT pg_catalog.max(tc.now_at) FROM toss_billing.test_clocks tc));
    v_grace interval := COALESCE((SELECT p.grace_period FROM toss_billing.invoice_policy p), '0');
    v_count integer := 0;
    v_ids bigint[];
    v_done bigint[];
    v_id bigint;
    v_want integer;
    v_failed integer;
    v_failed_total integer := 0;
BEGIN
    IF COALESCE(_finalize_due.max_count, 0) <= 0 THEN
        RETURN 0;
    END IF;
    FOR v_with_key IN REVERSE 1 .. 0 LOOP
        -- those without a card only once those with one are all taken: a
        -- claim that filled its count from the first would read through
        -- every due subscription in the second and find none
        EXIT WHEN v_with_key = 0 AND v_count >= _finalize_due.max_count;
        v_want := _finalize_due.max_count;
      <<refill>>
      LOOP
        SELECT pg_catalog.array_agg(d.id ORDER BY d.next_charge_at, d.id) INTO v_ids
          FROM (SELECT s.id, s.next_charge_at
                  FROM toss_billing.subscriptions s
                  LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
                 WHERE s.next_charge_at <= v_horizon
                   AND s.next_charge_at <= COALESCE(tc.now_at, v_now)
                   AND (s.id = _finalize_due.only_subscription
                        OR (_finalize_due.only_subscription IS NULL
                            AND (s.deferred_until IS NULL OR s.deferred_until <= COALESCE(tc.now_at, v_now))))
                   AND s.current_period_start
                       + CASE WHEN _finalize_due.only_subscription IS NULL THEN v_grace ELSE '0'::interval END
                       <= COALESCE(tc.now_at, v_now)
                   AND (s.status = ANY (ARRAY['active', 'past_due'])
                        OR (s.status = 'trialing' AND s.trial_end <= COALESCE(tc.now_at, v_now)))
                   AND EXISTS (SELECT FROM toss_billing.billing_keys bk
                                WHERE bk.customer_id = s.customer_id AND bk.status = 'active') = (v_with_key = 1)
                   AND NOT EXISTS (SELECT FROM toss_billing.invoices i
                                    WHERE i.subscription_id = s.id AND i.kind = 'period'
                                      AND i.period_number = s.period_number AND i.status <> 'draft'
                                   OFFSET 0)
                 ORDER BY s.next_charge_at, s.id
                 LIMIT v_want
                   FOR UPDATE OF s SKIP LOCKED) d;
        EXIT refill WHEN v_ids IS NULL;
        -- the plain ones together; if that fails, each alone below
        BEGIN
            v_done := toss_billing._finalize_plain(v_ids);
        EXCEPTION WHEN OTHERS THEN
            v_done := '{}';
        END;
        v_count := v_count + pg_catalog.cardinality(v_done);
        v_failed := 0;
        FOREACH v_id IN ARRAY v_ids LOOP
            CONTINUE WHEN v_id = ANY (v_done);
            BEGIN
                PERFORM toss_billing._finalize_period_invoice(v_id);
                v_count := v_count + 1;
            EXCEPTION WHEN OTHERS THEN
                IF _finalize_due.only_subscription IS NOT NULL THEN
                    RAISE;
                END IF;
                v_failed := v_failed + 1;
                PERFORM toss_billing._defer_subscription(v_id, 'the period''s invoice could not be finalised',
                                                         SQLSTATE, SQLERRM);
            END;
        END LOOP;
        -- the places of those that failed go to the next due ones (which
        -- the failed ones, deferred now, no longer hide)
        v_failed_total := v_failed_total + v_failed;
        EXIT refill WHEN v_failed = 0 OR _finalize_due.only_subscription IS NOT NULL
                         OR v_failed_total >= 4 * _finalize_due.max_count;
        v_want := v_failed;
      END LOOP;
    END LOOP;
    RETURN v_count;
END;
$$;

-- Makes an invoice due now, for the runner to charge on its next run (the
-- finalise-only half of charge_invoice_now, 62_charge_now, which then
-- charges it at once itself):
--   a draft proration or one-off invoice: finalised, due now
--   the subscription's next period draft: its one-off and proration lines
--     move to a one-off invoice of their own, finalised and due now (the
--     period's own lines stay for its start)
--   an open non-period invoice: due now again (after a failed charge)
--   an uncollectible non-period invoice (a canceled subscription's final
--     invoice whose charge failed): reopened (open again, due now; an
--     explicit request to charge it is a reason to try again)
--   an open or uncollectible period invoice of a past_due or unpaid
--     subscription: the subscription is retried now (_retry_now: past_due,
--     due now, dunning from the start), and an uncollectible invoice reopened
-- Returns the invoice to be charged (the new one-off invoice for a next
-- period's draft).  Refused: paid or void (55000), a period draft with only
-- its period's own lines (55000).  Locks the subscription's row first, then
-- the invoice's (the order every writer of both takes them in).
CREATE OR REPLACE FUNCTION toss_billing._invoice_due_now(invoice_id bigint)
RETURNS toss_billing.invoices
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_inv toss_billing.invoices;
    v_sub toss_billing.subscriptions;
    v_now timestamptz;
    v_new toss_billing.invoices;
BEGIN
    IF _invoice_due_now.invoice_id IS NULL THEN
        RAISE EXCEPTION 'invoice_id must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO v_inv FROM toss_billing.invoices i WHERE i.id = _invoice_due_now.invoice_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invoice % does not exist', _invoice_due_now.invoice_id USING ERRCODE = 'P0002';
    END IF;
    v_sub := toss_billing._lock_subscription(v_inv.subscription_id);
    SELECT * INTO v_inv FROM toss_billing.invoices i WHERE i.id = v_inv.id FOR UPDATE;
    v_now := toss_billing.subscription_now(v_sub.id);
    IF v_inv.status = ANY (ARRAY['paid', 'void']) THEN
        RAISE EXCEPTION 'invoice % is %', v_inv.id, v_inv.status USING ERRCODE = '55000',
            DETAIL = CASE v_inv.status
                         WHEN 'paid' THEN 'Nothing is owed on it.'
                         ELSE pg_catalog.format('Nothing is owed on it (%s).',
                                                COALESCE(v_inv.status_reason, 'voided')) END;
    END IF;
    IF v_inv.status = 'draft' AND v_inv.kind <> 'period' THEN
        RETURN toss_billing._finalize_invoice(v_inv.id);
    END IF;
    IF v_inv.status = 'draft' THEN
        IF NOT EXISTS (SELECT FROM toss_billing.invoice_items it
                        WHERE it.invoice_id = v_inv.id AND it.kind = ANY (ARRAY['one_off', 'proration'])) THEN
            RAISE EXCEPTION 'invoice % has nothing to charge now', v_inv.id USING ERRCODE = '55000',
                DETAIL = 'The draft holds only its period''s own lines, which are charged when the period starts.';
        END IF;
        INSERT INTO toss_billing.invoices (customer_id, subscription_id, kind, status, description)
        VALUES (v_sub.customer_id, v_sub.id, 'one_off', 'draft',
                pg_catalog.left((SELECT it.description FROM toss_billing.invoice_items it
                                  WHERE it.invoice_id = v_inv.id AND it.kind = ANY (ARRAY['one_off', 'proration'])
                                  ORDER BY it.id LIMIT 1), 100))
        RETURNING * INTO v_new;
        UPDATE toss_billing.invoice_items it SET invoice_id = v_new.id
         WHERE it.invoice_id = v_inv.id AND it.kind = ANY (ARRAY['one_off', 'proration']);
        RETURN toss_billing._finalize_invoice(v_new.id);
    END IF;
    IF v_inv.kind <> 'period' THEN
        IF v_inv.status = 'uncollectible' THEN
            PERFORM toss_billing._event(v_sub.id, 'retry_scheduled', v_sub.status, v_sub.status,
                                        'charge requested: the uncollectible invoice is reopened', v_now,
                                        pg_catalog.jsonb_build_object('invoice_id', v_inv.id, 'kind', v_inv.kind,
                                                                      'uncollectible_at', v_inv.uncollectible_at));
        END IF;
        UPDATE toss_billing.invoices i
           SET status = 'open', next_attempt_at = v_now, uncollectible_at = NULL,
               status_reason = CASE WHEN i.status = 'uncollectible' THEN 'reopened: a charge was requested'
                                    ELSE i.status_reason END,
               updated_at = pg_catalog.now()
         WHERE i.id = v_inv.id
        RETURNING * INTO v_inv;
        RETURN v_inv;
    END IF;
    IF v_sub.status = ANY (ARRAY['past_due', 'unpaid']) AND v_inv.period_number = v_sub.period_number THEN
        PERFORM toss_billing._retry_now(ARRAY[v_sub.id], 'charge requested');
        UPDATE toss_billing.invoices i
           SET status = 'open', uncollectible_at = NULL, status_reason = 'reopened: a charge was requested',
               updated_at = pg_catalog.now()
         WHERE i.id = v_inv.id AND i.status = 'uncollectible';
        SELECT * INTO v_inv FROM toss_billing.invoices i WHERE i.id = v_inv.id;
    END IF;
    RETURN v_inv;
END;
$$;

-- Proration lines for a change at a time within a paid period [from, till):
-- a credit for the unused time at the old terms and a charge for the
-- remaining time at the new ones, each unit_amount x quantity x remaining
-- seconds / period seconds, computed exactly and rounded by _won (halves
-- away from zero), each line on its own.  (The period's bounds are computed
-- in the subscription's time zone; its seconds are those that really pass:
-- a 23-hour DST day counts 23 hours.)
CREATE OR REPLACE FUNCTION toss_billing._proration_lines(
    period_from timestamptz, period_till timestamptz, change_at timestamptz,
    old_unit bigint, old_quantity integer, old_name text, old_tax_free boolean,
    new_unit bigint, new_quantity integer, new_name text, new_tax_free boolean)
RETURNS toss_billing.invoice_line[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_total numeric := EXTRACT(epoch FROM period_till - period_from);
    v_left numeric := EXTRACT(epoch FROM period_till - change_at);
    v_detail jsonb := pg_catalog.jsonb_build_object('remaining_seconds', v_left, 'period_seconds', v_total);
BEGIN
    RETURN ARRAY[
        ROW(NULL, 'proration', pg_catalog.format('Unused time on %s × %s', old_name, old_quantity), change_at,
            period_till, old_quantity::bigint, old_unit::numeric,
            -toss_billing._won(old_unit::numeric * old_quantity * v_left / v_total), old_tax_free, false, NULL, NULL, NULL,
            v_detail)::toss_billing.invoice_line,
        ROW(NULL, 'proration', pg_catalog.format('Remaining time on %s × %s', new_name, new_quantity), change_at,
            period_till, new_quantity::bigint, new_unit::numeric,
            toss_billing._won(new_unit::numeric * new_quantity * v_left / v_total), new_tax_free, false, NULL, NULL, NULL,
            v_detail)::toss_billing.invoice_line];
END;
$$;

-- Changes a subscription's plan and/or quantity now (change_plan and
-- set_quantity with a proration): 'immediate' charges the proration at once
-- on an invoice of its own, 'next_period' puts its lines on the next
-- invoice, 'none' makes none.  Prorates only a paid period (the time it is
-- paid through); during a trial, or in an open period whose invoice is not
-- finalised yet, the change simply applies (nothing was paid for it yet).
-- Returns the proration invoice, if one was made.
CREATE OR REPLACE FUNCTION toss_billing._change_now(sub toss_billing.subscriptions, new_plan_id bigint,
                                                    new_quantity integer, proration text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := toss_billing.subscription_now(sub.id);
    v_old toss_billing.plans;
    v_new toss_billing.plans;
    v_paid toss_billing.invoices;
    v_lines toss_billing.invoice_line[];
    v_inv toss_billing.invoices;
    v_old_unit bigint;
    v_new_unit bigint;
BEGIN
    SELECT * INTO v_old FROM toss_billing.plans p WHERE p.id = sub.plan_id;
    SELECT * INTO v_new FROM toss_billing.plans p WHERE p.id = _change_now.new_plan_id;
    IF (v_old.interval_unit, v_old.interval_count) IS DISTINCT FROM (v_new.interval_unit, v_new.interval_count) THEN
        RAISE EXCEPTION 'plan % bills on another interval than the subscription''s plan', v_new.id USING ERRCODE = '22023',
            DETAIL = 'A change now is prorated within the current period, which needs the same interval.',
            HINT = 'Change the plan from the next period on (proration => NULL).';
    END IF;
    IF sub.status = ANY (ARRAY['past_due', 'unpaid', 'paused', 'canceled']) THEN
        RAISE EXCEPTION 'subscription % is %', sub.id, sub.status USING ERRCODE = '55000',
            DETAIL = 'A change now needs a trialing or active subscription.',
            HINT = 'Change it from the next period on (proration => NULL), or settle its open invoice first.';
    END IF;
    v_old_unit := COALESCE(sub.amount_override, v_old.amount);
    v_new_unit := COALESCE(sub.amount_override, v_new.amount);
    SELECT * INTO v_paid FROM toss_billing.invoices i
     WHERE i.subscription_id = sub.id AND i.kind = 'period' AND i.status = 'paid'
       AND i.period_end = sub.current_period_start AND i.period_start <= v_now
     ORDER BY i.period_number DESC LIMIT 1;
    IF FOUND AND sub.current_period_start > v_now THEN
        IF _change_now.proration <> 'none' THEN
            v_lines := toss_billing._proration_lines(v_paid.period_start, v_paid.period_end, v_now,
                                                     v_old_unit, sub.quantity, v_old.name, v_old.tax_free,
                                                     v_new_unit, _change_now.new_quantity, v_new.name, v_new.tax_free);
            IF _change_now.proration = 'immediate' THEN
                INSERT INTO toss_billing.invoices (customer_id, subscription_id, kind, status, description,
                                                   period_start, period_end, plan_id, unit_amount, quantity)
                VALUES (sub.customer_id, sub.id, 'proration', 'draft',
                        pg_catalog.left(pg_catalog.format('%s × %s (change)', v_new.name, _change_now.new_quantity), 100),
                        v_now, v_paid.period_end, v_new.id, v_new_unit, _change_now.new_quantity)
                RETURNING * INTO v_inv;
            ELSE
                v_inv := toss_billing._draft_invoice(sub, true);
            END IF;
            INSERT INTO toss_billing.invoice_items (invoice_id, customer_id, subscription_id, kind, description,
                                                    period_start, period_end, quantity, unit_amount, amount, tax_free,
                                                    detail)
            SELECT v_inv.id, sub.customer_id, sub.id, l.kind, l.description, l.period_start, l.period_end, l.quantity,
                   l.unit_amount, l.amount, l.tax_free, l.detail
              FROM pg_catalog.unnest(v_lines) WITH ORDINALITY AS l
             ORDER BY l.ordinality;
            IF _change_now.proration = 'immediate' THEN
                v_inv := toss_billing._finalize_invoice(v_inv.id);
            END IF;
        END IF;
    ELSIF NOT (sub.status = 'trialing'
               OR (sub.current_period_start <= v_now
                   AND NOT EXISTS (SELECT FROM toss_billing.invoices i
                                    WHERE i.subscription_id = sub.id AND i.kind = 'period'
                                      AND i.period_number = sub.period_number AND i.status <> 'draft'))) THEN
        RAISE EXCEPTION 'subscription % has no paid period to prorate', sub.id USING ERRCODE = '55000',
            DETAIL = 'Its open period is invoiced and not paid yet.',
            HINT = 'Change it from the next period on (proration => NULL).';
    END IF;
    UPDATE toss_billing.subscriptions s
       SET plan_id = _change_now.new_plan_id, quantity = _change_now.new_quantity,
           pending_plan_id = NULL, pending_plan_period = NULL, pending_quantity = NULL, pending_quantity_period = NULL,
           updated_at = pg_catalog.now()
     WHERE s.id = sub.id;
    RETURN v_inv.id;
END;
$$;

-- The invoices of subscriptions that were just canceled: open period
-- invoices no order is paying are voided; the next draft, with the usage not
-- billed yet and the amounts carried forward, becomes the final invoice
-- (charged at once, like a one-off invoice); an empty draft is voided.
CREATE OR REPLACE FUNCTION toss_billing._close_invoices(subscription_ids bigint[], reason text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions;
    v_now timestamptz;
    v_draft toss_billing.invoices;
    v_records toss_billing._usage_row[];
    r toss_billing.invoice_preview;
BEGIN
    -- FOR UPDATE (the callers hold it already): usage being recorded (FOR
    -- KEY SHARE) is waited for and billed here; usage recorded after this
    -- sees the subscription canceled
    FOR v_sub IN SELECT * FROM toss_billing.subscriptions s
                  WHERE s.id = ANY (_close_invoices.subscription_ids) AND s.status = 'canceled'
                  ORDER BY s.id
                    FOR UPDATE
    LOOP
        v_now := toss_billing.subscription_now(v_sub.id);
        WITH voided AS (
            UPDATE toss_billing.invoices i
               SET status = 'void', voided_at = v_now, status_reason = _close_invoices.reason,
                   updated_at = pg_catalog.now()
             WHERE i.subscription_id = v_sub.id AND i.kind = 'period'
               AND i.status = ANY (ARRAY['open', 'uncollectible'])
               AND NOT EXISTS (SELECT FROM toss_billing.payments p
                                WHERE p.invoice_id = i.id AND p.state = ANY (ARRAY['in_flight', 'unknown', 'done']))
            RETURNING i.id)
        INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, type, from_status, to_status, reason,
                                         detail)
        SELECT v_now, v_sub.id, v_sub.customer_id, 'invoice_voided', 'canceled', 'canceled', _close_invoices.reason,
               pg_catalog.jsonb_build_object('invoice_id', v.id)
          FROM voided v ORDER BY v.id;
        UPDATE toss_billing.consent_requirements cr SET status = 'withdrawn', updated_at = pg_catalog.now()
         WHERE cr.subscription_id = v_sub.id AND cr.status = ANY (ARRAY['pending', 'consented']) AND cr.invoice_id IS NULL;

        SELECT * INTO v_draft FROM toss_billing.invoices i
         WHERE i.subscription_id = v_sub.id AND i.status = 'draft' AND i.kind = 'period'
         ORDER BY i.id LIMIT 1
           FOR UPDATE;
        IF NOT FOUND THEN
            CONTINUE WHEN NOT EXISTS (SELECT FROM toss_billing.usage_records u
                                       WHERE u.subscription_id = v_sub.id AND u.invoice_id IS NULL)
                      AND NOT EXISTS (SELECT FROM toss_billing.invoices i
                                       WHERE i.subscription_id = v_sub.id AND i.carried_forward <> 0
                                         AND i.carried_into_invoice_id IS NULL
                                         AND i.status = ANY (ARRAY['paid', 'void']));
            INSERT INTO toss_billing.invoices (customer_id, subscription_id, kind, status, description)
            VALUES (v_sub.customer_id, v_sub.id, 'final', 'draft',
                    pg_catalog.left((SELECT pl.name FROM toss_billing.plans pl WHERE pl.id = v_sub.plan_id)
                                    || ' (final invoice)', 100))
            RETURNING * INTO v_draft;
        ELSE
            UPDATE toss_billing.invoices i
               SET kind = 'final', period_number = NULL,
                   description = pg_catalog.left((SELECT pl.name FROM toss_billing.plans pl WHERE pl.id = v_sub.plan_id)
                                                 || ' (final invoice)', 100)
             WHERE i.id = v_draft.id;
        END IF;
        WITH marked AS (
            UPDATE toss_billing.usage_records u SET invoice_id = v_draft.id
             WHERE u.subscription_id = v_sub.id AND u.invoice_id IS NULL
            RETURNING u.meter_id, u.quantity, u.occurred_at, u.recorded_at, u.usage_key)
        SELECT pg_catalog.array_agg(ROW(m.meter_id, m.quantity, m.occurred_at, m.recorded_at, m.usage_key)::toss_billing._usage_row)
          INTO v_records FROM marked m;
        r := toss_billing._compose(v_sub, 'final', v_draft.id, COALESCE(v_records, '{}'), v_now);
        IF pg_catalog.cardinality(r.lines) = 0 THEN
            UPDATE toss_billing.invoices i
               SET status = 'void', voided_at = v_now, finalized_at = v_now,
                   status_reason = 'nothing to bill: ' || _close_invoices.reason, updated_at = pg_catalog.now()
             WHERE i.id = v_draft.id;
            CONTINUE;
        END IF;
        PERFORM toss_billing._write_invoice(v_draft.id, r, v_now);
    END LOOP;
END;
$$;

GRANT EXECUTE ON FUNCTION toss_billing.preview_invoice(bigint), toss_billing._next_amount(bigint, integer)
    TO toss_billing_operator, toss_billing_auditor;
GRANT EXECUTE ON FUNCTION toss_billing.add_invoice_item(bigint, bigint, text, integer, boolean, text),
                          toss_billing.delete_invoice_item(bigint)
    TO toss_billing_operator;
GRANT SELECT ON toss_billing.invoices, toss_billing.invoice_items, toss_billing.invoice_policy
    TO toss_billing_operator, toss_billing_auditor;
REVOKE ALL ON TYPE toss_billing._usage_row FROM PUBLIC;
REVOKE ALL ON TYPE toss_billing.invoice_line, toss_billing.invoice_preview FROM PUBLIC;
GRANT USAGE ON TYPE toss_billing.invoice_line, toss_billing.invoice_preview TO toss_billing_operator, toss_billing_auditor;
