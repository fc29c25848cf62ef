-- 34_consent: the Korean price-change consent rule (전자상거래법 제13조
-- 제6항, 시행령 제20조의2, in force since 2025-02-14).  When a recurring
-- price rises, or a free trial converts to paid, the merchant must obtain the
-- customer's consent within the 30 days before the change (to the date, the
-- old and new price and the payment method, telling them how to cancel);
-- without it the increase must not happen automatically.
--
-- toss_billing enforces it.  Whenever the next period invoice's recurring
-- amount (plan price x quantity, less the coupon's discount on it) would
-- exceed the customer's baseline -- the recurring terms of the last period
-- invoice (paid, or open and being paid), or 0 for a trial -- a consent
-- requirement is made for that period: its effective date, old and new
-- amount.  Events tell the app to ask (consent_required 30 days before,
-- consent_reminder later); record_consent stores the proof; a consent
-- counts only within the 30 days before the effective date and for those
-- amounts.  At the period's start the runner finalises the invoice: with a
-- counting consent the new price is charged; without one, per the invoice
-- policy, the previous amount is charged (a consent_adjustment line) or the
-- subscription is canceled (always so for a trial: there is no previous
-- amount).  Quantity changes are the customer's own (set_quantity): amounts
-- are compared at the current quantity, so seats never need consent; a
-- requirement made before the seats changed is restated at the new quantity
-- (restated_from), its consent kept; usage lines, prorations and one-off
-- items are not recurring amounts.

-- @data

-- Consent requirements: one per increase of a period's recurring amount.
--   period_number, effective_at  the period whose invoice would charge it,
--                  and when (its start)
--   reason         trial_conversion, plan_change, price_change, coupon_expiry
--   quantity       the quantity the amounts are computed at
--   old_unit_amount, old_coupon_id  the baseline terms (NULL for a trial)
--   new_unit_amount, new_coupon_id, new_plan_id  the new terms
--   old_amount, new_amount  the recurring amounts, at quantity
--   payment_method the card to be charged (masked number) when it was made
--   status         pending (no counting consent yet), consented, missing
--                  (the period was invoiced without it: fallback says what
--                  was done), superseded (the terms changed again: a new
--                  requirement replaces it), withdrawn (no increase any more)
--   required_at    when it was made (the subscription's clock)
--   notice_at, noticed_at    30 days before the effective date; when the
--                  consent_required event was recorded
--   reminder_at, reminded_at the policy's reminder; its event
--   invoice_id     the invoice it governed
--   restated_from  the first requirement of the same price change when this
--                  one restates it at another quantity (set_quantity changed
--                  the seats: same baseline, same new terms, amounts at the
--                  new quantity); the customer was told of the change from
--                  that one's required_at on, and a consent that counted for
--                  it still counts (the seats are the customer's own choice)
CREATE TABLE toss_billing.consent_requirements (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id bigint NOT NULL REFERENCES toss_billing.subscriptions (id),
    customer_id     bigint NOT NULL REFERENCES toss_billing.customers (id),
    period_number   integer NOT NULL,
    effective_at    timestamptz NOT NULL,
    reason          text NOT NULL
                    CHECK (reason OPERATOR(pg_catalog.=) ANY (ARRAY['trial_conversion', 'plan_change', 'price_change',
                                                                     'coupon_expiry'])),
    quantity        integer NOT NULL,
    old_unit_amount bigint,
    old_coupon_id   bigint REFERENCES toss_billing.coupons (id),
    old_amount      bigint NOT NULL,
    new_plan_id     bigint NOT NULL REFERENCES toss_billing.plans (id),
    new_unit_amount bigint NOT NULL,
    new_coupon_id   bigint REFERENCES toss_billing.coupons (id),
    new_amount      bigint NOT NULL,
    payment_method  text,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'consented', 'missing', 'superseded',
                                                                     'withdrawn'])),
    fallback        text CHECK (fallback OPERATOR(pg_catalog.=) ANY (ARRAY['kept_old_amount', 'canceled'])),
    required_at     timestamptz NOT NULL,
    notice_at       timestamptz NOT NULL,
    noticed_at      timestamptz,
    reminder_at     timestamptz,
    reminded_at     timestamptz,
    invoice_id      bigint REFERENCES toss_billing.invoices (id),
    resolved_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    restated_from   bigint REFERENCES toss_billing.consent_requirements (id),
    CONSTRAINT consent_requirements_increase CHECK (new_amount OPERATOR(pg_catalog.>) old_amount)
);
CREATE INDEX consent_requirements_subscription ON toss_billing.consent_requirements (subscription_id, period_number);
CREATE INDEX consent_requirements_customer ON toss_billing.consent_requirements (customer_id);
CREATE INDEX consent_requirements_restated ON toss_billing.consent_requirements (restated_from)
    WHERE restated_from IS NOT NULL;
CREATE INDEX consent_requirements_notice ON toss_billing.consent_requirements (notice_at)
    WHERE status OPERATOR(pg_catalog.=) 'pending' AND noticed_at IS NULL;
CREATE INDEX consent_requirements_reminder ON toss_billing.consent_requirements (reminder_at)
    WHERE status OPERATOR(pg_catalog.=) 'pending' AND reminded_at IS NULL;
SELECT pg_catalog.pg_extension_config_dump('toss_billing.consent_requirements', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.consent_requirements_id_seq', '');

-- Consents as recorded, each with its evidence, whether it counts or not.
--   consented_at   when the customer consented (the app's word)
--   channel        how (e.g. web, app, email, kakao, phone)
--   evidence       the proof (what was shown, the customer's action, ids)
--   effective_at, old_amount, new_amount  what the requirement said then
--   counts         within the 30 days before effective_at (and not after
--                  it), and for the requirement's amounts (evidence that
--                  names old_amount / new_amount must name these); never
--                  before the requirement was made (refused)
--   why_not        why it does not count
--   recorded_by    the session user that recorded it
CREATE TABLE toss_billing.consents (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    requirement_id  bigint NOT NULL REFERENCES toss_billing.consent_requirements (id),
    subscription_id bigint NOT NULL REFERENCES toss_billing.subscriptions (id),
    customer_id     bigint NOT NULL REFERENCES toss_billing.customers (id),
    consented_at    timestamptz NOT NULL,
    channel         text NOT NULL CHECK (pg_catalog.char_length(channel) OPERATOR(pg_catalog.<=) 50),
    evidence        jsonb NOT NULL,
    effective_at    timestamptz NOT NULL,
    old_amount      bigint NOT NULL,
    new_amount      bigint NOT NULL,
    counts          boolean NOT NULL,
    why_not         text,
    recorded_by     name NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX consents_requirement ON toss_billing.consents (requirement_id);
CREATE INDEX consents_customer ON toss_billing.consents (customer_id);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.consents', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.consents_id_seq', '');

-- @code

-- The recurring amount of price terms at a quantity: price x quantity less
-- the coupon's discount on it.
CREATE OR REPLACE FUNCTION toss_billing._recurring(unit_amount bigint, quantity integer, coupon_id bigint)
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT $1 OPERATOR(pg_catalog.*) $2
           OPERATOR(pg_catalog.-) toss_billing._coupon_discount($3, $1 OPERATOR(pg_catalog.*) $2);
$$;

-- The customer's baseline for period p: the agreed terms of the latest
-- period invoice before it (paid, or open), or a trial's 0 when none was
-- paid yet; has_baseline is false when there is no baseline (a first period
-- without a trial: the customer subscribed at that price).
CREATE OR REPLACE FUNCTION toss_billing._consent_baseline(sub toss_billing.subscriptions, p integer,
                                                          OUT has_baseline boolean, OUT trial boolean,
                                                          OUT unit_amount bigint, OUT coupon_id bigint,
                                                          OUT plan_id bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT true, false, i.agreed_unit_amount, i.agreed_coupon_id, i.plan_id
      INTO has_baseline, trial, unit_amount, coupon_id, plan_id
      FROM toss_billing.invoices i
     WHERE i.subscription_id = sub.id AND i.kind = 'period' AND i.period_number < _consent_baseline.p
       AND i.status = ANY (ARRAY['paid', 'open', 'uncollectible']) AND i.agreed_unit_amount IS NOT NULL
     ORDER BY i.period_number DESC
     LIMIT 1;
    IF has_baseline THEN
        RETURN;
    END IF;
    has_baseline := sub.trial_end IS NOT NULL;
    trial := has_baseline;
END;
$$;

-- What the consent rule says for period p's invoice at these new terms:
--   outcome  not_needed (no increase), consented (a counting consent of its
--            requirement), kept_old_amount or canceled (none: the policy's
--            fallback; a trial's conversion is always canceled)
-- with the requirement, the old and new amounts and the old terms.  Reads only.
CREATE OR REPLACE FUNCTION toss_billing._consent_for(sub toss_billing.subscriptions, p integer, unit_amount bigint,
                                                     quantity integer, coupon_id bigint,
                                                     OUT outcome text, OUT requirement_id bigint,
                                                     OUT old_amount bigint, OUT new_amount bigint,
                                                     OUT old_unit_amount bigint, OUT old_coupon_id bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b record;
    v_status text;
BEGIN
    b := toss_billing._consent_baseline(sub, _consent_for.p);
    outcome := 'not_needed';
    IF NOT b.has_baseline OR (SELECT ip.consent_rule FROM toss_billing.invoice_policy ip) = 'off' THEN
        RETURN;
    END IF;
    old_unit_amount := b.unit_amount;
    old_coupon_id := b.coupon_id;
    old_amount := CASE WHEN b.trial THEN 0 ELSE toss_billing._recurring(b.unit_amount, _consent_for.quantity, b.coupon_id) END;
    new_amount := toss_billing._recurring(_consent_for.unit_amount, _consent_for.quantity, _consent_for.coupon_id);
    IF new_amount <= old_amount THEN
        RETURN;
    END IF;
    SELECT r.id, r.status INTO requirement_id, v_status
      FROM toss_billing.consent_requirements r
     WHERE r.subscription_id = sub.id AND r.period_number = _consent_for.p
       AND r.status = ANY (ARRAY['pending', 'consented'])
       AND r.old_unit_amount IS NOT DISTINCT FROM b.unit_amount AND r.old_coupon_id IS NOT DISTINCT FROM b.coupon_id
       AND (r.reason = 'trial_conversion') = b.trial
       AND r.new_unit_amount = _consent_for.unit_amount AND r.new_coupon_id IS NOT DISTINCT FROM _consent_for.coupon_id
       AND r.quantity = _consent_for.quantity
     ORDER BY r.id DESC
     LIMIT 1;
    IF v_status = 'consented' THEN
        outcome := 'consented';
    ELSIF b.trial OR (SELECT ip.consent_fallback FROM toss_billing.invoice_policy ip) = 'cancel' THEN
        outcome := 'canceled';
    ELSE
        outcome := 'kept_old_amount';
    END IF;
END;
$$;

-- Brings a subscription's consent requirement for its next period invoice
-- up to date: made when the recurring amount would rise (with the
-- consent_required event at once if its notice date has come), superseded
-- when the terms changed again, withdrawn when there is no increase any
-- more.  When only the quantity changed (the same price change at other
-- seats), the requirement is superseded by one restating it at the current
-- quantity (restated_from): pending stays pending (consent_required again,
-- with the amounts the invoice will show), consented stays consented.
-- Called by every change of price terms or quantity and after every period
-- invoice is finalised.  Returns the pending or consented requirement, if any.
CREATE OR REPLACE FUNCTION toss_billing._review_consent(subscription_id bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions;
    v_now timestamptz;
    v_p integer;
    t record;
    b record;
    v_coupon bigint;
    v_old bigint;
    v_new bigint;
    v_id bigint;
    v_reminder interval;
    r toss_billing.consent_requirements;
    v_same toss_billing.consent_requirements;
BEGIN
    SELECT * INTO v_sub FROM toss_billing.subscriptions s WHERE s.id = _review_consent.subscription_id;
    IF NOT FOUND OR v_sub.status = 'canceled' THEN
        RETURN NULL;
    END IF;
    v_now := toss_billing.subscription_now(v_sub.id);
    v_p := toss_billing._next_period(v_sub);
    t := toss_billing._terms_at(v_sub, v_p);
    v_coupon := toss_billing._coupon_for_next(v_sub.id);
    b := toss_billing._consent_baseline(v_sub, v_p);
    IF b.has_baseline THEN
        v_old := CASE WHEN b.trial THEN 0 ELSE toss_billing._recurring(b.unit_amount, t.quantity, b.coupon_id) END;
        v_new := toss_billing._recurring(t.unit_amount, t.quantity, v_coupon);
    END IF;
    IF NOT b.has_baseline OR v_new <= v_old OR (SELECT ip.consent_rule FROM toss_billing.invoice_policy ip) = 'off' THEN
        UPDATE toss_billing.consent_requirements cr SET status = 'withdrawn', updated_at = pg_catalog.now()
         WHERE cr.subscription_id = v_sub.id AND cr.period_number >= v_p
           AND cr.status = ANY (ARRAY['pending', 'consented']) AND cr.invoice_id IS NULL;
        RETURN NULL;
    END IF;
    -- the requirement of this very price change, if there is one
    SELECT * INTO v_same FROM toss_billing.consent_requirements cr
     WHERE cr.subscription_id = v_sub.id AND cr.period_number = v_p
       AND cr.status = ANY (ARRAY['pending', 'consented'])
       AND cr.old_unit_amount IS NOT DISTINCT FROM b.unit_amount AND cr.old_coupon_id IS NOT DISTINCT FROM b.coupon_id
       AND (cr.reason = 'trial_conversion') = b.trial
       AND cr.new_unit_amount = t.unit_amount AND cr.new_coupon_id IS NOT DISTINCT FROM v_coupon
     ORDER BY cr.id DESC LIMIT 1;
    IF v_same.quantity = t.quantity THEN
        RETURN v_same.id;
    END IF;
    UPDATE toss_billing.consent_requirements cr SET status = 'superseded', updated_at = pg_catalog.now()
     WHERE cr.subscription_id = v_sub.id AND cr.period_number >= v_p
       AND cr.status = ANY (ARRAY['pending', 'consented']) AND cr.invoice_id IS NULL;
    v_reminder := (SELECT ip.consent_reminder FROM toss_billing.invoice_policy ip);
    -- a new requirement; or, when only the quantity changed, the same price
    -- change restated at the current quantity (a consent that counted for it
    -- still counts: the seats are the customer's own)
    INSERT INTO toss_billing.consent_requirements
           (subscription_id, customer_id, period_number, effective_at, reason, quantity, old_unit_amount, old_coupon_id,
            old_amount, new_plan_id, new_unit_amount, new_coupon_id, new_amount, payment_method, status, required_at,
            notice_at, noticed_at, reminder_at, restated_from)
    VALUES (v_sub.id, v_sub.customer_id, v_p, t.period_start,
            COALESCE(v_same.reason,
                     CASE WHEN b.trial THEN 'trial_conversion'
                          WHEN t.unit_amount <> b.unit_amount THEN CASE WHEN t.plan_id <> b.plan_id THEN 'plan_change'
                                                                        ELSE 'price_change' END
                          ELSE 'coupon_expiry' END),
            t.quantity, b.unit_amount, b.coupon_id, v_old, t.plan_id, t.unit_amount, v_coupon, v_new,
            (SELECT bk.card_number FROM toss_billing.billing_keys bk
              WHERE bk.customer_id = v_sub.customer_id AND bk.status = 'active' ORDER BY bk.id DESC LIMIT 1),
            COALESCE(v_same.status, 'pending'), v_now, t.period_start - interval '30 days',
            CASE WHEN t.period_start - interval '30 days' <= v_now THEN v_now END,
            CASE WHEN v_reminder > '0'::interval AND t.period_start - v_reminder > v_now
                 THEN t.period_start - v_reminder END,
            COALESCE(v_same.restated_from, v_same.id))
    RETURNING * INTO r;
    IF r.noticed_at IS NOT NULL AND r.status = 'pending' THEN
        PERFORM toss_billing._event(v_sub.id, 'consent_required', v_sub.status, v_sub.status,
                                    'the recurring amount rises: ask the customer''s consent', v_now,
                                    toss_billing._consent_notice(r));
    END IF;
    RETURN r.id;
END;
$$;

-- What a consent event tells the app: everything the customer must be told.
CREATE OR REPLACE FUNCTION toss_billing._consent_notice(r toss_billing.consent_requirements)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.jsonb_build_object(
        'requirement_id', ($1).id, 'reason', ($1).reason, 'effective_at', ($1).effective_at,
        'old_amount', ($1).old_amount, 'new_amount', ($1).new_amount, 'quantity', ($1).quantity,
        'payment_method', ($1).payment_method,
        'consent_window_opens', ($1).effective_at OPERATOR(pg_catalog.-) interval '30 days',
        'hint', 'Ask for consent to the date, the old and new amount and the payment method, tell the customer how to cancel (toss_billing.cancel_subscription), and record it with toss_billing.record_consent().');
$$;

-- The consent events that are due (the runner calls it): consent_required
-- when a requirement's notice date (30 days before its effective date) has
-- come on its subscription's clock, consent_reminder at its reminder date
-- while no consent counts.  Only the given subscriptions' (all when NULL,
-- but those deferred: deferred_until ahead).  Returns how many events.
CREATE OR REPLACE FUNCTION toss_billing._consent_notices(subscription_ids bigint[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := toss_billing.now();
    v_horizon timestamptz := GREATEST(v_now, (SELECT pg_catalog.max(tc.now_at) FROM toss_billing.test_clocks tc));
    v_a integer;
    v_b integer;
BEGIN
    WITH due AS (
        SELECT r.id
          FROM toss_billing.consent_requirements r
          JOIN toss_billing.subscriptions s ON s.id = r.subscription_id
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE r.status = 'pending' AND r.noticed_at IS NULL AND r.notice_at <= v_horizon
           AND r.notice_at <= COALESCE(tc.now_at, v_now)
           AND (s.id = ANY (_consent_notices.subscription_ids)
                OR (_consent_notices.subscription_ids IS NULL
                    AND (s.deferred_until IS NULL OR s.deferred_until <= COALESCE(tc.now_at, v_now))))
         ORDER BY r.id
           FOR UPDATE OF r SKIP LOCKED),
    noticed AS (
        UPDATE toss_billing.consent_requirements r SET noticed_at = r.notice_at, updated_at = pg_catalog.now()
          FROM due d WHERE r.id = d.id
        RETURNING r.*)
    INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, type, from_status, to_status, reason, detail)
    SELECT n.notice_at, n.subscription_id, n.customer_id, 'consent_required', s.status, s.status,
           'the recurring amount rises: ask the customer''s consent',
           toss_billing._consent_notice(ROW(n.*)::toss_billing.consent_requirements)
      FROM noticed n JOIN toss_billing.subscriptions s ON s.id = n.subscription_id
     ORDER BY n.id;
    GET DIAGNOSTICS v_a = ROW_COUNT;
    WITH due AS (
        SELECT r.id
          FROM toss_billing.consent_requirements r
          JOIN toss_billing.subscriptions s ON s.id = r.subscription_id
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE r.status = 'pending' AND r.reminded_at IS NULL AND r.noticed_at IS NOT NULL
           AND r.reminder_at <= v_horizon AND r.reminder_at <= COALESCE(tc.now_at, v_now)
           AND (s.id = ANY (_consent_notices.subscription_ids)
                OR (_consent_notices.subscription_ids IS NULL
                    AND (s.deferred_until IS NULL OR s.deferred_until <= COALESCE(tc.now_at, v_now))))
         ORDER BY r.id
           FOR UPDATE OF r SKIP LOCKED),
    reminded AS (
        UPDATE toss_billing.consent_requirements r SET reminded_at = r.reminder_at, updated_at = pg_catalog.now()
          FROM due d WHERE r.id = d.id
        RETURNING r.*)
    INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, type, from_status, to_status, reason, detail)
    SELECT n.reminder_at, n.subscription_id, n.customer_id, 'consent_reminder', s.status, s.status,
           'no consent to the price increase yet',
           toss_billing._consent_notice(ROW(n.*)::toss_billing.consent_requirements)
      FROM reminded n JOIN toss_billing.subscriptions s ON s.id = n.subscription_id
     ORDER BY n.id;
    GET DIAGNOSTICS v_b = ROW_COUNT;
    RETURN v_a + v_b;
END;
$$;

-- The runner's consent events (_claim_due): all that are due, together; if
-- that fails, each subscription's alone (_each_alone), and one that fails is
-- deferred with an alert while the others go on.
CREATE OR REPLACE FUNCTION toss_billing._send_due_consent_notices()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := toss_billing.now();
    v_horizon timestamptz := GREATEST(v_now, (SELECT pg_catalog.max(tc.now_at) FROM toss_billing.test_clocks tc));
BEGIN
    BEGIN
        RETURN toss_billing._consent_notices(NULL);
    EXCEPTION WHEN OTHERS THEN
        NULL;   -- one of them cannot be recorded: each subscription's alone below
    END;
    RETURN toss_billing._each_alone('_consent_notices', ARRAY(
        SELECT DISTINCT r.subscription_id
          FROM toss_billing.consent_requirements r
          JOIN toss_billing.subscriptions s ON s.id = r.subscription_id
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE r.status = 'pending'
           AND ((r.noticed_at IS NULL AND r.notice_at <= v_horizon)
                OR (r.noticed_at IS NOT NULL AND r.reminded_at IS NULL AND r.reminder_at <= v_horizon))
           AND (s.deferred_until IS NULL OR s.deferred_until <= COALESCE(tc.now_at, v_now))
         ORDER BY 1), 'a consent notice could not be recorded');
END;
$$;

-- Records a customer's consent to a requirement, with its proof.  It is
-- kept whatever it says; it counts (the increase may then be charged) only
-- if consented_at is within the 30 days before the requirement's effective
-- date and the evidence names no other amounts.  A consented_at before the
-- requirement was made (required_at: the customer cannot have been told of
-- the change yet) is refused (22023), as is one in the future.  A
-- requirement that was superseded or withdrawn takes no consent.  Returns
-- the consent.
CREATE OR REPLACE FUNCTION toss_billing.record_consent(
    subscription_id bigint,
    requirement bigint,
    consented_at timestamptz,
    channel text,
    evidence jsonb)
RETURNS toss_billing.consents
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions;
    v_now timestamptz;
    r toss_billing.consent_requirements;
    v_told timestamptz;
    v_why text;
    v_c toss_billing.consents;
BEGIN
    IF record_consent.subscription_id IS NULL OR record_consent.requirement IS NULL
       OR record_consent.consented_at IS NULL OR record_consent.channel IS NULL OR record_consent.evidence IS NULL THEN
        RAISE EXCEPTION 'subscription_id, requirement, consented_at, channel and evidence must not be null'
            USING ERRCODE = '22004';
    END IF;
    v_sub := toss_billing._lock_subscription(record_consent.subscription_id);
    v_now := toss_billing.subscription_now(v_sub.id);
    SELECT * INTO r FROM toss_billing.consent_requirements cr
     WHERE cr.id = record_consent.requirement AND cr.subscription_id = v_sub.id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription % has no consent requirement %', v_sub.id, record_consent.requirement
            USING ERRCODE = 'P0002';
    END IF;
    IF r.status = ANY (ARRAY['superseded', 'withdrawn']) THEN
        RAISE EXCEPTION 'consent requirement % is %', r.id, r.status USING ERRCODE = '55000',
            DETAIL = CASE WHEN r.status = 'superseded' AND EXISTS (SELECT FROM toss_billing.consent_requirements x
                                                                         WHERE x.restated_from = COALESCE(r.restated_from, r.id)
                                                                           AND x.id > r.id)
                          THEN 'The quantity changed: a requirement with the amounts at the current quantity replaces it.'
                          WHEN r.status = 'superseded' THEN 'The price terms changed again: another requirement replaces it.'
                          ELSE 'The recurring amount no longer rises.' END,
            HINT = 'See toss_billing.consent_requirements for the subscription''s pending requirement.';
    END IF;
    IF NOT pg_catalog.isfinite(record_consent.consented_at) THEN
        RAISE EXCEPTION 'consented_at must be a finite time' USING ERRCODE = '22023';
    END IF;
    IF record_consent.consented_at > v_now THEN
        RAISE EXCEPTION 'consented_at is in the future' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('It is %s; the subscription''s clock says %s.', record_consent.consented_at, v_now);
    END IF;
    -- a consent is to a change the customer was told of: not before the
    -- requirement existed (the app learns of it from then on, the
    -- consent_required event follows)
    -- (a requirement restating one at another quantity: since the first one)
    v_told := COALESCE((SELECT f.required_at FROM toss_billing.consent_requirements f WHERE f.id = r.restated_from),
                       r.required_at);
    IF record_consent.consented_at < v_told THEN
        RAISE EXCEPTION 'consented_at is before consent requirement % was made', r.id USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('It is %s; the requirement (the change from %s to %s KRW on %s) was made at %s, and a consent given before the customer could be told of the change is not a consent to it.',
                                       record_consent.consented_at, r.old_amount, r.new_amount, r.effective_at,
                                       v_told),
            HINT = 'Record the time the customer consented after being shown the change.';
    END IF;
    IF record_consent.channel = '' OR pg_catalog.char_length(record_consent.channel) > 50
       OR record_consent.channel ~ '[\x01-\x1f\x7f]' THEN
        RAISE EXCEPTION 'channel must be 1 to 50 characters without control characters' USING ERRCODE = '22023';
    END IF;
    IF pg_catalog.jsonb_typeof(record_consent.evidence) <> 'object' THEN
        RAISE EXCEPTION 'evidence must be a JSON object' USING ERRCODE = '22023',
            HINT = 'Store what the customer was shown and did, e.g. {"screen": "...", "old_amount": 9900, "new_amount": 12900}.';
    END IF;
    IF pg_catalog.octet_length(record_consent.evidence::text) > 65536 THEN
        RAISE EXCEPTION 'evidence must be at most 64 kB' USING ERRCODE = '22023';
    END IF;
    v_why := CASE
        WHEN record_consent.consented_at < r.effective_at - interval '30 days'
        THEN pg_catalog.format('given %s before the effective date %s: more than 30 days before it',
                               pg_catalog.justify_interval(r.effective_at - record_consent.consented_at), r.effective_at)
        WHEN record_consent.consented_at >= r.effective_at
        THEN pg_catalog.format('given on or after the effective date %s', r.effective_at)
        WHEN (record_consent.evidence ? 'old_amount'
              AND toss_billing._json_int(record_consent.evidence->'old_amount') IS DISTINCT FROM r.old_amount)
          OR (record_consent.evidence ? 'new_amount'
              AND toss_billing._json_int(record_consent.evidence->'new_amount') IS DISTINCT FROM r.new_amount)
        THEN pg_catalog.format('the evidence names other amounts than %s -> %s KRW', r.old_amount, r.new_amount)
        WHEN r.status = 'missing' THEN 'the period was invoiced without it already'
        END;
    INSERT INTO toss_billing.consents (requirement_id, subscription_id, customer_id, consented_at, channel, evidence,
                                       effective_at, old_amount, new_amount, counts, why_not, recorded_by)
    VALUES (r.id, v_sub.id, v_sub.customer_id, record_consent.consented_at, record_consent.channel,
            record_consent.evidence, r.effective_at, r.old_amount, r.new_amount, v_why IS NULL, v_why, SESSION_USER)
    RETURNING * INTO v_c;
    IF v_why IS NULL THEN
        UPDATE toss_billing.consent_requirements cr SET status = 'consented', updated_at = pg_catalog.now()
         WHERE cr.id = r.id;
    END IF;
    PERFORM toss_billing._event(v_sub.id, 'consent_recorded', v_sub.status, v_sub.status,
                                CASE WHEN v_why IS NULL THEN 'consent to the price increase recorded'
                                     ELSE 'a consent was recorded that does not count: ' || v_why END,
                                v_now,
                                pg_catalog.jsonb_build_object('requirement_id', r.id, 'consent_id', v_c.id,
                                                              'counts', v_c.counts, 'channel', v_c.channel));
    RETURN v_c;
END;
$$;

-- Every increase of a recurring amount, with its consent evidence: one row
-- per requirement (superseded and withdrawn ones too), the consent that
-- counts (if any), the ones that did not, and what was charged.  A
-- requirement restated at another quantity (restated_from) shows the
-- consents given to the statements of the same price change before it.
CREATE OR REPLACE VIEW toss_billing.price_increases AS
SELECT r.id AS requirement_id, r.subscription_id, r.customer_id, c.customer_key, r.reason, r.period_number,
       r.effective_at, r.quantity, r.old_unit_amount, r.new_unit_amount, r.old_amount, r.new_amount,
       r.payment_method, r.status, r.fallback, r.required_at, r.noticed_at, r.reminded_at,
       r.invoice_id, i.status AS invoice_status, i.recurring_amount AS charged_recurring_amount,
       v.id AS consent_id, v.consented_at, v.channel, v.evidence, v.recorded_by, v.recorded_at,
       (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('consent_id', x.id, 'consented_at', x.consented_at,
                                                                  'channel', x.channel, 'evidence', x.evidence,
                                                                  'why_not', x.why_not) ORDER BY x.id)
          FROM toss_billing.consents x
         WHERE x.requirement_id OPERATOR(pg_catalog.=) ANY (s.statements) AND NOT x.counts) AS consents_not_counted,
       r.restated_from
  FROM toss_billing.consent_requirements r
  JOIN toss_billing.customers c ON c.id OPERATOR(pg_catalog.=) r.customer_id
  LEFT JOIN toss_billing.invoices i ON i.id OPERATOR(pg_catalog.=) r.invoice_id
  -- the statements of this price change up to this one: itself, and the
  -- ones it restates at another quantity
  CROSS JOIN LATERAL (SELECT CASE WHEN r.restated_from IS NULL THEN ARRAY[r.id]
                                  ELSE ARRAY(SELECT xr.id FROM toss_billing.consent_requirements xr
                                              WHERE (xr.id OPERATOR(pg_catalog.=) r.restated_from
                                                     OR xr.restated_from OPERATOR(pg_catalog.=) r.restated_from)
                                                AND xr.id OPERATOR(pg_catalog.<=) r.id) END AS statements) s
  LEFT JOIN LATERAL (SELECT x.* FROM toss_billing.consents x
                      WHERE x.requirement_id OPERATOR(pg_catalog.=) ANY (s.statements) AND x.counts
                      ORDER BY x.id DESC LIMIT 1) v ON true;

GRANT EXECUTE ON FUNCTION toss_billing.record_consent(bigint, bigint, timestamptz, text, jsonb) TO toss_billing_operator;
GRANT SELECT ON toss_billing.consent_requirements, toss_billing.consents, toss_billing.price_increases
    TO toss_billing_operator, toss_billing_auditor;
