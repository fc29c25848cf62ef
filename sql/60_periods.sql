-- Billing periods: computed from the anchor and the period number in the
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- subscription's time zone, never by chaining "+ 1 month".
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';

-- month ends: Jan 31 -> Feb 29 (2024 is a leap year) -> Mar 31 -> Apr 30 ...
SELECT n, toss_billing.period_start('2024-01-31 00:00 Asia/Seoul', 'Asia/Seoul', 'month', 1, n)
              AT TIME ZONE 'Asia/Seoul' AS local_start
  FROM generate_series(0, 12) AS n;

-- ... and Feb 28 in a common year, then back to the 31st
SELECT n, toss_billing.period_start('2023-01-31 00:00 Asia/Seoul', 'Asia/Seoul', 'month', 1, n)
              AT TIME ZONE 'Asia/Seoul' AS local_start
  FROM generate_series(0, 3) AS n;

-- chaining would drift to the 28th/29th for good; the anchor never does
SELECT '2024-01-31'::timestamp + interval '1 month' + interval '1 month' AS chained,
       toss_billing.period_start('2024-01-31 00:00 Asia/Seoul', 'Asia/Seoul', 'month', 1, 2)
           AT TIME ZONE 'Asia/Seoul' AS from_anchor;

-- quarterly from the 30th
SELECT n, toss_billing.period_start('2024-11-30 00:00 Asia/Seoul', 'Asia/Seoul', 'month', 3, n)
              AT TIME ZONE 'Asia/Seoul' AS local_start
  FROM generate_series(0, 4) AS n;

-- yearly from a leap day: Feb 28 in common years, Feb 29 again in 2028
SELECT n, toss_billing.period_start('2024-02-29 09:00 Asia/Seoul', 'Asia/Seoul', 'year', 1, n)
              AT TIME ZONE 'Asia/Seoul' AS local_start
  FROM generate_series(0, 4) AS n;

-- weekly and daily, and every 2 weeks
SELECT n,
       toss_billing.period_start('2024-02-26 10:00 Asia/Seoul', 'Asia/Seoul', 'week', 1, n) AT TIME ZONE 'Asia/Seoul' AS weekly,
       toss_billing.period_start('2024-02-26 10:00 Asia/Seoul', 'Asia/Seoul', 'week', 2, n) AT TIME ZONE 'Asia/Seoul' AS fortnightly,
       toss_billing.period_start('2024-02-27 10:00 Asia/Seoul', 'Asia/Seoul', 'day', 1, n) AT TIME ZONE 'Asia/Seoul' AS daily
  FROM generate_series(0, 3) AS n;

-- midnight in Seoul is 15:00 UTC the day before
SELECT n, toss_billing.period_start('2024-03-01 00:00 Asia/Seoul', 'Asia/Seoul', 'month', 1, n) AS utc
  FROM generate_series(0, 2) AS n;

-- a DST zone keeps the local wall-clock time: 09:00 in New York is 14:00 UTC
-- in winter and 13:00 UTC in summer (DST began 2024-03-10, ended 2024-11-03)
SELECT n,
       toss_billing.period_start('2024-03-08 09:00 America/New_York', 'America/New_York', 'day', 1, n) AS utc,
       toss_billing.period_start('2024-03-08 09:00 America/New_York', 'America/New_York', 'day', 1, n)
           AT TIME ZONE 'America/New_York' AS local_start
  FROM generate_series(0, 3) AS n;
SELECT n,
       toss_billing.period_start('2024-10-21 09:00 America/New_York', 'America/New_York', 'week', 1, n) AS utc,
       toss_billing.period_start('2024-10-21 09:00 America/New_York', 'America/New_York', 'week', 1, n)
           AT TIME ZONE 'America/New_York' AS local_start
  FROM generate_series(0, 3) AS n;

-- the zone matters: Jan 31 00:00 in Seoul is Jan 30 15:00 UTC, so a month
-- later is Feb 29 00:00 in Seoul but Feb 29 15:00 computed in UTC
SELECT toss_billing.period_start('2024-01-30 15:00 UTC', 'Asia/Seoul', 'month', 1, 1) AS in_seoul,
       toss_billing.period_start('2024-01-30 15:00 UTC', 'UTC', 'month', 1, 1) AS in_utc;

-- a period is [start(n), start(n+1)): each instant is in exactly one period
SELECT toss_billing._period_at('2024-01-31 00:00 Asia/Seoul', 'Asia/Seoul', 'month', 1, t) AS n, t AT TIME ZONE 'Asia/Seoul' AS local_time
  FROM unnest(ARRAY['2024-01-30 23:59:59 Asia/Seoul', '2024-01-31 00:00 Asia/Seoul', '2024-02-28 23:59:59 Asia/Seoul',
                    '2024-02-29 00:00 Asia/Seoul', '2024-03-30 12:00 Asia/Seoul', '2024-03-31 00:00 Asia/Seoul',
                    '2025-01-31 00:00 Asia/Seoul']::timestamptz[]) AS t;
SELECT toss_billing._period_at('2024-03-08 09:00 America/New_York', 'America/New_York', 'day', 1,
                               '2024-03-11 08:59 America/New_York') AS before_nine,
       toss_billing._period_at('2024-03-08 09:00 America/New_York', 'America/New_York', 'day', 1,
                               '2024-03-11 09:00 America/New_York') AS at_nine,
       toss_billing._period_at('2020-02-29 00:00 Asia/Seoul', 'Asia/Seoul', 'day', 7,
                               '2024-02-29 00:00 Asia/Seoul') AS weeks_of_days;
-- consistent with period_start over many periods of every unit
SELECT u, c, count(*) FILTER (WHERE toss_billing._period_at(a, 'Asia/Seoul', u, c, toss_billing.period_start(a, 'Asia/Seoul', u, c, n)) <> n
                              OR toss_billing._period_at(a, 'Asia/Seoul', u, c, toss_billing.period_start(a, 'Asia/Seoul', u, c, n + 1) - interval '1 microsecond') <> n) AS mismatches
  FROM (VALUES ('2024-01-31 00:00 Asia/Seoul'::timestamptz)) AS x(a),
       unnest(ARRAY['day', 'week', 'month', 'year']) AS u, unnest(ARRAY[1, 3]) AS c, generate_series(0, 40) AS n
 GROUP BY u, c ORDER BY u, c;

-- bad input
SELECT toss_billing.period_start('2024-01-31', 'Asia/Seoul', 'fortnight', 1, 1);
SELECT toss_billing.period_start('2024-01-31', 'Asia/Seoul', 'month', 0, 1);
SELECT toss_billing.period_start('2024-01-31', 'Mars/Olympus_Mons', 'month', 1, 1);
SELECT toss_billing.period_start(NULL, 'Asia/Seoul', 'month', 1, 1) IS NULL AS null_in_null_out;

-- time zones a subscription may use: IANA names, not POSIX offsets
SELECT tz, toss_billing._valid_time_zone(tz) AS valid
  FROM unnest(ARRAY['Asia/Seoul', 'America/New_York', 'UTC', 'Etc/GMT-9', 'KST', 'UTC+9', '+09', 'Asia/Nowhere',
                    '', 'Asia/Seoul; DROP TABLE x']) AS tz;
