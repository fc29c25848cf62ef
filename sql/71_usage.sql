-- Usage-based prices (issue 14): the aggregations (sum, max, last), unit and
-- tiered prices (graduated, volume, flat amounts, fractional unit prices
-- rounded once per line), late usage of each aggregation, the batch form and
-- the COPY-able staging table with their per-row outcomes, usage billed by
-- the final invoice when a subscription ends, and bad input.
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
\set ECHO all

SELECT id AS cloud FROM toss_billing.create_plan('클라우드', 10000) \gset
SELECT metric, aggregation, unit_amount FROM toss_billing.add_plan_meter(:cloud, 'storage_gb', 'max', 100, description => '저장공간 (GB, 최대)');
SELECT metric, aggregation, unit_amount FROM toss_billing.add_plan_meter(:cloud, 'active_users', 'last', 500, description => '활성 사용자 (기말)');
SELECT metric, tiers, tiers_mode FROM toss_billing.add_plan_meter(:cloud, 'requests', tiers => '[{"up_to": 1000, "unit_amount": 1},
                                                                                              {"up_to": null, "unit_amount": 0.5, "flat_amount": 200}]',
                                                                 tiers_mode => 'volume', description => '요청 (볼륨 단가)');
SELECT metric, unit_amount, tax_free FROM toss_billing.add_plan_meter(:cloud, 'lessons', unit_amount => 0.3, tax_free => true,
                                                                      description => '교육 이벤트 (면세)');
SELECT pg_temp.customer('us-a');
SELECT pg_temp.customer('us-b');
SELECT toss_billing.freeze_clock('2025-01-01 00:00+09');
SELECT id AS a FROM toss_billing.create_subscription('us-a', :cloud) \gset
SELECT id AS b FROM toss_billing.create_subscription('us-b', :cloud) \gset
SELECT * FROM pg_temp.run('done');

-- January: storage 10, 30, 20 GB (max 30: 3,000); active users 5, 7, 6
-- (last 6: 3,000); 1,500 requests (all at the second tier's 0.5, plus its
-- flat 200: 950); 15 lessons (12 in a batch, 3 through the staging table)
-- at 0.3 = 4.5 -> 5 (tax-free)
SELECT toss_billing.record_usage(:a, 'storage_gb', 10, '2025-01-02 10:00+09', 's1'),
       toss_billing.record_usage(:a, 'storage_gb', 30, '2025-01-10 10:00+09', 's2'),
       toss_billing.record_usage(:a, 'storage_gb', 20, '2025-01-20 10:00+09', 's3'),
       toss_billing.record_usage(:a, 'active_users', 5, '2025-01-03 10:00+09', 'u1'),
       toss_billing.record_usage(:a, 'active_users', 7, '2025-01-20 10:00+09', 'u2'),
       toss_billing.record_usage(:a, 'active_users', 6, '2025-01-25 10:00+09', 'u3'),
       toss_billing.record_usage(:a, 'requests', 1500, '2025-01-15 10:00+09', 'r1');
-- the batch form: one row per element that was not recorded
SELECT * FROM toss_billing.record_usage_batch(
    ARRAY[:a, :a, :a, :a, :a, :a, :a, :a, -1, :a]::bigint[],
    ARRAY['lessons', 'lessons', 'lessons', 'lessons', 'storage_gb', 'nope', 'lessons', NULL, 'lessons', 'lessons'],
    ARRAY[3, 3, 3, 3, 10, 1, -2, 1, 1, 3]::bigint[],
    ARRAY['l1', 'l2', 'l3', 'l2', 's1', 'x1', 'x2', 'x3', 'x4', 'l4'],
    ARRAY['2025-01-05 10:00+09', '2025-01-06 10:00+09', '2025-01-07 10:00+09', '2025-01-06 10:00+09', NULL, NULL,
          NULL, NULL, NULL, '2025-01-08 10:00+09']::timestamptz[]);
-- the batch again: every element is a duplicate now (or still rejected)
SELECT outcome, count(*) FROM toss_billing.record_usage_batch(
    ARRAY[:a, :a, :a]::bigint[], ARRAY['lessons', 'lessons', 'lessons'], ARRAY[3, 3, 3]::bigint[],
    ARRAY['l1', 'l2', 'l3']) GROUP BY 1;
SELECT pg_temp.err('SELECT toss_billing.record_usage_batch(ARRAY[1]::bigint[], ARRAY[''a'', ''b''], ARRAY[1]::bigint[], ARRAY[''k''])');
-- the staging table an application COPYs into, taken in by ingest_usage
-- (the rows an application would COPY in: COPY toss_billing.usage_staging
-- (subscription_id, metric, quantity, "at", usage_key) FROM STDIN)
INSERT INTO toss_billing.usage_staging (subscription_id, metric, quantity, "at", usage_key)
VALUES (:a, 'lessons', 1, '2025-01-09 10:00+09', 'l5'),
       (:a, 'lessons', 2, '2025-01-09 11:00+09', 'l6'),
       (:a, 'lessons', 2, '2025-01-09 11:00+09', 'l6'),
       (:a, 'lessons', 5, '2025-01-09 12:00+09', 'l1'),
       (:a, 'teleport', 1, NULL, 't1');
SELECT * FROM toss_billing.ingest_usage();
SELECT metric, quantity, usage_key, rejected_reason, customer_id IS NOT NULL AS with_customer FROM toss_billing.usage_staging ORDER BY usage_key;
DELETE FROM toss_billing.usage_staging;
SELECT * FROM toss_billing.ingest_usage();

-- Feb 1: 10,000 + 3,000 + 3,000 + 950 + 5 (15 lessons; tax-free)
SELECT toss_billing.advance_clock('31 days');
SELECT * FROM pg_temp.preview(:a);
SELECT * FROM pg_temp.run('done');
SELECT l.description, l.detail FROM toss_billing.invoice_items l JOIN toss_billing.invoices i ON i.id = l.invoice_id
 WHERE i.subscription_id = :a AND i.period_number = 1 AND l.kind = 'usage' ORDER BY l.id;

-- late January usage: storage 40 GB on Jan 28 raises the max (4,000 - 3,000);
-- 25 GB on Jan 15 changes nothing; 4 active users on Jan 28 is the new last
-- value (2,000 - 3,000: a credit); 100 more requests (volume: 1,600 x 0.5 +
-- 200 = 1,000, minus 950)
SELECT toss_billing.record_usage(:a, 'storage_gb', 40, '2025-01-28 10:00+09', 's4'),
       toss_billing.record_usage(:a, 'storage_gb', 25, '2025-01-15 10:00+09', 's5'),
       toss_billing.record_usage(:a, 'active_users', 4, '2025-01-28 10:00+09', 'u4'),
       toss_billing.record_usage(:a, 'requests', 100, '2025-01-31 23:59+09', 'r2');
-- February, on time: 12 GB, 8 users, 200 requests (at the first tier: 200)
SELECT toss_billing.record_usage(:a, 'storage_gb', 12, '2025-02-10 10:00+09', 's6'),
       toss_billing.record_usage(:a, 'active_users', 8, '2025-02-10 10:00+09', 'u5'),
       toss_billing.record_usage(:a, 'requests', 200, '2025-02-10 10:00+09', 'r3');
SELECT toss_billing.advance_clock('28 days');
SELECT * FROM pg_temp.preview(:a);
SELECT * FROM pg_temp.run('done');

-- us-b ends mid-March: its March usage goes on a final invoice, charged at
-- once under an order of its own; usage after that is refused
SELECT toss_billing.record_usage(:b, 'requests', 300, idempotency_key => 'b-r1');
SELECT toss_billing.advance_clock('10 days');
SELECT toss_billing.record_usage(:b, 'storage_gb', 5, idempotency_key => 'b-s1');
SELECT status FROM toss_billing.cancel_subscription(:b, false);
SELECT * FROM pg_temp.invoices(:b);
SELECT * FROM pg_temp.lines(:b, 4);
SELECT * FROM pg_temp.run('done');
SELECT pg_temp.err(format('SELECT toss_billing.record_usage(%s, %L, 1, idempotency_key => %L)', :b, 'requests', 'b-r2'));
SELECT ordinal, outcome, reason FROM toss_billing.record_usage_batch(ARRAY[:b]::bigint[], ARRAY['requests'], ARRAY[1]::bigint[], ARRAY['b-r2']);
-- ... but a retry of usage recorded before the end is still a no-op
SELECT toss_billing.record_usage(:b, 'requests', 300, idempotency_key => 'b-r1') AS recorded;
SELECT ordinal, outcome, reason FROM toss_billing.record_usage_batch(ARRAY[:b]::bigint[], ARRAY['requests'], ARRAY[300]::bigint[], ARRAY['b-r1']);

-- a retry after a plan change: the key recorded requests under the old
-- plan's meter; the same call again (the same metric and quantity, the same
-- "at" or none) is a no-op whether the new plan meters requests itself or
-- not at all, in either form; the key with another quantity or time is
-- refused
SELECT id AS cloud2 FROM toss_billing.create_plan('클라우드 2', 12000) \gset
SELECT metric, unit_amount FROM toss_billing.add_plan_meter(:cloud2, 'requests', unit_amount => 2);
SELECT id AS plain FROM toss_billing.create_plan('기본', 8000) \gset
SELECT pg_temp.customer('us-c');
SELECT id AS c FROM toss_billing.create_subscription('us-c', :cloud) \gset
SELECT * FROM pg_temp.run('done');
SELECT toss_billing.record_usage(:c, 'requests', 10, '2025-03-10 12:00+09', 'c-r1') AS recorded;
SELECT plan_id = :cloud2 AS changed FROM toss_billing.change_plan(:c, :cloud2, proration => 'none');
SELECT toss_billing.record_usage(:c, 'requests', 10, '2025-03-10 12:00+09', 'c-r1') AS recorded,
       toss_billing.record_usage(:c, 'requests', 10, idempotency_key => 'c-r1') AS recorded_without_at;
SELECT ordinal, outcome, reason FROM toss_billing.record_usage_batch(
    ARRAY[:c, :c, :c]::bigint[], ARRAY['requests', 'requests', 'requests'], ARRAY[10, 11, 10]::bigint[],
    ARRAY['c-r1', 'c-r1', 'c-r1'], ARRAY['2025-03-10 12:00+09', NULL, '2025-03-10 13:00+09']::timestamptz[]);
SELECT plan_id = :plain AS changed FROM toss_billing.change_plan(:c, :plain, proration => 'none');
SELECT toss_billing.record_usage(:c, 'requests', 10, '2025-03-10 12:00+09', 'c-r1') AS recorded;
SELECT ordinal, outcome, reason FROM toss_billing.record_usage_batch(ARRAY[:c]::bigint[], ARRAY['requests'], ARRAY[10]::bigint[],
                                                                     ARRAY['c-r1']);
SELECT pg_temp.err(format('SELECT toss_billing.record_usage(%s, %L, 11, idempotency_key => %L)', :c, 'requests', 'c-r1'));
SELECT pg_temp.err(format('SELECT toss_billing.record_usage(%s, %L, 10, %L, %L)', :c, 'requests', '2025-03-10 13:00+09', 'c-r1'));
SELECT pg_temp.err(format('SELECT toss_billing.record_usage(%s, %L, 10, idempotency_key => %L)', :c, 'storage_gb', 'c-r1'));
\set VERBOSITY default
SELECT toss_billing.record_usage(:c, 'requests', 10, '2025-03-10 13:00+09', 'c-r1');
SELECT count(*) AS records, sum(quantity) AS quantity FROM toss_billing.usage_records WHERE subscription_id = :c;

-- bad input
SELECT pg_temp.err(format('SELECT toss_billing.record_usage(%s, %L, -1, idempotency_key => %L)', :a, 'requests', 'k'));
SELECT pg_temp.err(format('SELECT toss_billing.record_usage(%s, %L, 1, idempotency_key => %L)', :a, 'nope', 'k'));
SELECT pg_temp.err(format('SELECT toss_billing.record_usage(%s, %L, 1)', :a, 'requests'));
SELECT pg_temp.err(format('SELECT toss_billing.record_usage(%s, %L, 1, %L, %L)', :a, 'requests', 'infinity', 'k'));
SELECT pg_temp.err(format('SELECT toss_billing.record_usage(%s, %L, 1, idempotency_key => %L)', :a, 'requests', ''));
SELECT pg_temp.err('SELECT toss_billing.record_usage(-1, ''requests'', 1, idempotency_key => ''k'')');
SELECT pg_temp.err('SELECT toss_billing.ingest_usage(0)');
SELECT pg_temp.err(format('SELECT toss_billing.add_plan_meter(%s, %L, unit_amount => 1)', :cloud, 'requests'));
SELECT pg_temp.err(format('SELECT toss_billing.add_plan_meter(%s, %L, unit_amount => 1)', :cloud, 'Bad Name'));
SELECT pg_temp.err(format('SELECT toss_billing.add_plan_meter(%s, %L, %L, 1)', :cloud, 'x', 'avg'));
SELECT pg_temp.err(format('SELECT toss_billing.add_plan_meter(%s, %L)', :cloud, 'x'));
SELECT pg_temp.err(format('SELECT toss_billing.add_plan_meter(%s, %L, unit_amount => 1, tiers => %L)', :cloud, 'x', '[]'));
SELECT pg_temp.err(format('SELECT toss_billing.add_plan_meter(%s, %L, tiers => %L)', :cloud, 'x', '[{"up_to": 10, "unit_amount": 1}]'));
SELECT pg_temp.err(format('SELECT toss_billing.add_plan_meter(%s, %L, tiers => %L)', :cloud, 'x',
                          '[{"up_to": 10, "unit_amount": 1}, {"up_to": 5, "unit_amount": 1}, {"up_to": null}]'));
SELECT pg_temp.err(format('SELECT toss_billing.add_plan_meter(%s, %L, tiers => %L)', :cloud, 'x', '[{"up_to": null, "unit_amount": -1}]'));
SELECT pg_temp.err(format('SELECT toss_billing.add_plan_meter(%s, %L, tiers => %L)', :cloud, 'x', '[{"up_to": null, "price": 1}]'));
SELECT pg_temp.err(format('SELECT toss_billing.add_plan_meter(%s, %L, tiers => %L, tiers_mode => %L)', :cloud, 'x',
                          '[{"up_to": null, "unit_amount": 1}]', 'stairs'));
SELECT pg_temp.err('SELECT toss_billing.add_plan_meter(-1, ''x'', unit_amount => 1)');

SELECT pg_temp.cleanup('us-');
