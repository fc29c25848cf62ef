-- Plain invoices (issue 13): the runner finalises the period invoices whose
-- only line is the plan's together, set-based (_finalize_plain), and every
-- other one alone (_finalize_period_invoice).  The set-based path must write
-- exactly what the one-at-a-time path writes.  Each case here is a pair of
-- twin subscriptions made alike: one twin's invoice is finalised by
-- _finalize_period_invoice, the other's by _finalize_plain (and, when that
-- leaves it, by _finalize_period_invoice); then every column of the twins'
-- invoices and lines is compared.  First periods, then renewals.
\set SHOW_CONTEXT never
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
\getenv tbtest TB_TEST
\set ECHO none
\set helpers :tbtest '/../../sql/include/subscription_helpers.psql'
\i :helpers
\set helpers :tbtest '/../../sql/include/invoice_helpers.psql'
\i :helpers

-- finalises the open period's invoice of every twin: the slow twins' one at
-- a time, the fast twins' through _finalize_plain; returns, per case,
-- whether _finalize_plain took it
CREATE FUNCTION pg_temp.finalize_twins()
RETURNS TABLE (twin_case text, plain boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_fast bigint[];
    v_done bigint[];
BEGIN
    FOR v_id IN SELECT s.id FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
                 WHERE c.customer_key LIKE 'tw-s-%' ORDER BY s.id LOOP
        PERFORM toss_billing._finalize_period_invoice(v_id);
    END LOOP;
    SELECT array_agg(s.id ORDER BY s.id) INTO v_fast
      FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
     WHERE c.customer_key LIKE 'tw-f-%';
    PERFORM FROM toss_billing.subscriptions s WHERE s.id = ANY (v_fast) FOR UPDATE;
    v_done := toss_billing._finalize_plain(v_fast);
    FOREACH v_id IN ARRAY v_fast LOOP
        IF NOT v_id = ANY (v_done) THEN
            PERFORM toss_billing._finalize_period_invoice(v_id);
        END IF;
    END LOOP;
    RETURN QUERY SELECT substr(c.customer_key, 6), s.id = ANY (v_done)
                   FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
                  WHERE s.id = ANY (v_fast) ORDER BY 1;
END;
$$;

-- the twins' invoices, lines, events and consent requirements side by side: every column but the ids of
-- their own rows (ids of shared rows, e.g. plan, meter, coupon, stay; each
-- twin has a consent requirement of its own)
CREATE FUNCTION pg_temp.twin_rows(side text)
RETURNS TABLE (twin_case text, what text, n bigint, row_data jsonb)
LANGUAGE sql AS $$
    SELECT substr(c.customer_key, 6), 'invoice',
           row_number() OVER (PARTITION BY c.customer_key ORDER BY i.id),
           to_jsonb(i) - ARRAY['id', 'customer_id', 'subscription_id', 'carried_into_invoice_id']
      FROM toss_billing.invoices i JOIN toss_billing.customers c ON c.id = i.customer_id
     WHERE c.customer_key LIKE 'tw-' || side || '-%'
    UNION ALL
    SELECT substr(c.customer_key, 6), 'line',
           row_number() OVER (PARTITION BY c.customer_key ORDER BY it.id),
           (to_jsonb(it) - ARRAY['id', 'invoice_id', 'customer_id', 'subscription_id', 'source_invoice_id'])
               || jsonb_build_object('detail', it.detail - 'requirement_id')
      FROM toss_billing.invoice_items it JOIN toss_billing.customers c ON c.id = it.customer_id
     WHERE c.customer_key LIKE 'tw-' || side || '-%'
    UNION ALL
    SELECT substr(c.customer_key, 6), 'event',
           row_number() OVER (PARTITION BY c.customer_key ORDER BY e.id),
           jsonb_build_object('type', e.type, 'from', e.from_status, 'to', e.to_status, 'reason', e.reason)
      FROM toss_billing.events e JOIN toss_billing.customers c ON c.id = e.customer_id
     WHERE c.customer_key LIKE 'tw-' || side || '-%'
    UNION ALL
    SELECT substr(c.customer_key, 6), 'consent requirement',
           row_number() OVER (PARTITION BY c.customer_key ORDER BY r.id),
           to_jsonb(r) - ARRAY['id', 'subscription_id', 'customer_id', 'invoice_id', 'restated_from']
      FROM toss_billing.consent_requirements r JOIN toss_billing.customers c ON c.id = r.customer_id
     WHERE c.customer_key LIKE 'tw-' || side || '-%';
$$;

-- what differs between the twins (no rows: nothing), and how much was compared
CREATE FUNCTION pg_temp.compare_twins()
RETURNS TABLE (twin_case text, what text, n bigint, slow jsonb, fast jsonb)
LANGUAGE sql AS $$
    SELECT COALESCE(s.twin_case, f.twin_case), COALESCE(s.what, f.what), COALESCE(s.n, f.n), s.row_data, f.row_data
      FROM pg_temp.twin_rows('s') s
      FULL JOIN pg_temp.twin_rows('f') f USING (twin_case, what, n)
     WHERE s.row_data IS DISTINCT FROM f.row_data
    UNION ALL
    SELECT 'compared', what, count(*), NULL, NULL FROM pg_temp.twin_rows('s') GROUP BY what
     ORDER BY 1, 2, 3;
$$;

-- each case's twins, made alike
CREATE FUNCTION pg_temp.twins(twin_case text, plan_id bigint, amount_override bigint DEFAULT NULL)
RETURNS TABLE (slow bigint, fast bigint)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_temp.customer('tw-s-' || twin_case);
    PERFORM pg_temp.customer('tw-f-' || twin_case);
    slow := (toss_billing.create_subscription('tw-s-' || twin_case, plan_id, amount_override => amount_override)).id;
    fast := (toss_billing.create_subscription('tw-f-' || twin_case, plan_id, amount_override => amount_override)).id;
    RETURN NEXT;
END;
$$;
\set ECHO all

SELECT id AS basic FROM toss_billing.create_plan('기본', 9900) \gset
SELECT id AS taxfree FROM toss_billing.create_plan('도서 구독', 12000, tax_free => true) \gset
SELECT id AS metered FROM toss_billing.create_plan('API', 5000) \gset
SELECT id AS pro FROM toss_billing.create_plan('프로', 29900) \gset
SELECT metric FROM toss_billing.add_plan_meter(:metered, 'calls', 'sum', 2);
SELECT code FROM toss_billing.create_coupon('TWIN10', percent_off => 10, duration => 'forever');
SELECT toss_billing.freeze_clock('2025-03-01 09:00+09');

-- first periods: plain (the plan alone, with its tax-free part, a price
-- override, usage recorded in the period itself); not plain (a one-off
-- item, a coupon)
SELECT slow AS basic_s, fast AS basic_f FROM pg_temp.twins('basic', :basic) \gset
SELECT slow AS taxfree_s, fast AS taxfree_f FROM pg_temp.twins('taxfree', :taxfree) \gset
SELECT slow AS override_s, fast AS override_f FROM pg_temp.twins('override', :basic, 7700) \gset
SELECT slow AS metered_s, fast AS metered_f FROM pg_temp.twins('metered', :metered) \gset
SELECT slow AS oneoff_s, fast AS oneoff_f FROM pg_temp.twins('oneoff', :basic) \gset
SELECT slow AS coupon_s, fast AS coupon_f FROM pg_temp.twins('coupon', :basic) \gset
SELECT slow AS seats_s, fast AS seats_f FROM pg_temp.twins('seats', :basic) \gset
SELECT slow AS raise_s, fast AS raise_f FROM pg_temp.twins('raise', :basic) \gset
SELECT slow AS upgrade_s, fast AS upgrade_f FROM pg_temp.twins('upgrade', :basic) \gset
SELECT toss_billing.record_usage(:metered_s, 'calls', 40, idempotency_key => 'm1'),
       toss_billing.record_usage(:metered_f, 'calls', 40, idempotency_key => 'm1');
SELECT (toss_billing.add_invoice_item(:oneoff_s, 3000, '설치비')).amount, (toss_billing.add_invoice_item(:oneoff_f, 3000, '설치비')).amount;
SELECT (toss_billing.apply_coupon(:coupon_s, 'TWIN10')).status, (toss_billing.apply_coupon(:coupon_f, 'TWIN10')).status;
SELECT * FROM pg_temp.finalize_twins();
SELECT * FROM pg_temp.compare_twins();
-- a plain invoice as written
SELECT kind, period_number, status, description, subtotal, discount, total, amount_due, tax_free_amount,
       recurring_amount, consent, agreed_unit_amount, usage_from, usage_until, period_start, period_end
  FROM toss_billing.invoices WHERE subscription_id IN (:taxfree_f, :basic_f) ORDER BY id;
SELECT kind, description, quantity, unit_amount, amount, tax_free FROM toss_billing.invoice_items
 WHERE subscription_id IN (:taxfree_f, :basic_f) ORDER BY id;

-- the periods are paid; a month on, renewals: plain (unchanged, and the
-- one-off's twins now without it); not plain (usage of the last period,
-- seats scheduled, and increases without consent: a new price, a dearer
-- plan, the coupon removed)
SELECT count(*) AS paid FROM pg_temp.run('done');
SELECT toss_billing.remove_coupon(:coupon_s), toss_billing.remove_coupon(:coupon_f);
SELECT (toss_billing.set_quantity(:seats_s, 3, 'next_period')).status, (toss_billing.set_quantity(:seats_f, 3, 'next_period')).status;
SELECT (toss_billing.change_price(:raise_s, 12900)).status, (toss_billing.change_price(:raise_f, 12900)).status;
SELECT (toss_billing.change_plan(:upgrade_s, :pro, 'next_period')).status, (toss_billing.change_plan(:upgrade_f, :pro, 'next_period')).status;
SELECT toss_billing.advance_clock('1 month');
SELECT * FROM pg_temp.finalize_twins();
SELECT * FROM pg_temp.compare_twins();

-- a third period: the seats are the baseline now and renew plainly; the
-- increases still have no consent, so their old amounts are kept again
SELECT count(*) AS paid FROM pg_temp.run('done');
SELECT toss_billing.advance_clock('1 month');
SELECT * FROM pg_temp.finalize_twins();
SELECT * FROM pg_temp.compare_twins();

-- one row that cannot be written fails the set-based statement as a
-- whole: _finalize_due then finalises each alone, and the others go on
SELECT count(*) AS paid FROM pg_temp.run('done');
SELECT toss_billing.advance_clock('1 month');
ALTER TABLE toss_billing.invoices ADD CONSTRAINT twin_trap CHECK (unit_amount IS DISTINCT FROM 7700) NOT VALID;
SELECT toss_billing._finalize_due(100);
ALTER TABLE toss_billing.invoices DROP CONSTRAINT twin_trap;
SELECT substr(c.customer_key, 6) AS twin_case, i.status
  FROM toss_billing.invoices i JOIN toss_billing.customers c ON c.id = i.customer_id
 WHERE c.customer_key LIKE 'tw-%' AND i.kind = 'period' AND i.period_number = 3 AND c.customer_key LIKE '%basic'
 ORDER BY 1;
SELECT type, reason, detail->>'sqlstate' AS sqlstate FROM toss_billing.events
 WHERE type = 'alert' AND subscription_id IN (:override_s, :override_f) ORDER BY id;

SELECT pg_temp.cleanup('tw-');
