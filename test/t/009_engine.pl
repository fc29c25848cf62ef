# The call engine under load: 256 concurrent toss_charge callers on a server
# with a handful of worker slots are all served, none refused, each charge
# made exactly once (the emulator's own ledger agrees with ours); the
# workers show what they do in pg_stat_activity without secrets; the queue
# and the call statistics are visible to the auditor; a result bigger than a
# queue slot arrives whole; and the per-customer lock pattern the
# documentation recommends does not deadlock, while the one it warns about
# fails clearly instead of waiting forever.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use IPC::Run;
use Time::HiRes qw(time sleep);
use TossTest;

my ($url, $emulator) = start_emulator();
# pg_cron's launcher takes one of the four slots; the engine gets at most two
my $node = toss_node('engine', max_worker_processes => 4, max_connections => 300,
	'toss_billing.engine_workers' => 2);
my $customers = 20;
is(issue_key($node, sprintf('eng-%03d', $_)), 'active', "key of eng-$_") for 1 .. $customers;
$node->safe_psql('postgres', q{
	CREATE SEQUENCE public.load_seq;
	CREATE ROLE clerk LOGIN IN ROLE toss_billing_operator;
	CREATE ROLE reader LOGIN IN ROLE toss_billing_auditor;
	GRANT USAGE ON SEQUENCE public.load_seq TO clerk;
	SELECT toss_billing.stats_reset();
});

sub pgbench
{
	my ($clients, $transactions, $script, $user) = @_;
	my $file = $node->basedir . "/bench-$clients.sql";
	open(my $fh, '>', $file) or die;
	print $fh $script;
	close $fh;
	my ($out, $err) = ('', '');
	my $t0 = time;
	my $ok = IPC::Run::run([ 'pgbench', '-n', '-h', $node->host, '-p', $node->port, '-U', $user // 'clerk',
			'-c', $clients, '-j', 8, '-t', $transactions, '-f', $file, 'postgres' ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(300));
	return ($ok, $out, $err, time - $t0);
}

# 1. 256 callers at once, 100 ms at Toss each
emu_post('/__emulator/faults',
	{ match => { method => 'POST', pathPrefix => '/v1/billing/' }, fault => { latencyMs => 100 } });
my $before = emu_get('/__emulator/ledger')->{totalDone};
my $sampler = $node->background_psql('postgres', on_error_stop => 0);
my ($ok, $out, $err, $secs) = pgbench(256, 2, q{
SELECT nextval('public.load_seq') AS n \gset
SELECT status FROM toss_billing.toss_charge('eng-' || lpad((1 + :n % 20)::text, 3, '0'), 4900, '부하', 'load-' || :n);
});
ok($ok, sprintf('256 callers x 2 charges finished in %.1f s, none refused', $secs)) or diag("$out\n$err");
unlike($err, qr/ERROR|aborted/, 'no caller got an error');
is($node->safe_psql('postgres', "SELECT count(*) FROM toss_billing.payments WHERE order_id LIKE 'load-%' AND state = 'done'"),
	'512', 'the ledger has the 512 charges, all done');
my $ledger = emu_get('/__emulator/ledger');
is($ledger->{totalDone} - $before, 512, 'the emulator made exactly 512 charges');
is(scalar @{ $ledger->{duplicateOrderIds} }, 0, 'no order was charged twice');
my @loads = grep { /^load-/ } keys %{ $ledger->{doneByOrderId} };
is(scalar @loads, 512, 'every load order was charged at the emulator');
my %ours = map { $_ => 1 } split /\n/, $node->safe_psql('postgres',
	"SELECT order_id FROM toss_billing.payments WHERE order_id LIKE 'load-%' AND state = 'done'");
is(scalar(grep { !$ours{$_} } @loads), 0, 'every charge at the emulator is in the ledger');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT customer_id FROM toss_billing.payments
	                       WHERE order_id LIKE 'load-%' GROUP BY 1 HAVING count(*) <> 512 / 20 AND count(*) <> 512 / 20 + 1) x}),
	'0', 'the charges went to the right customers');
my $workers = $node->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'toss_billing engine'");
cmp_ok($workers, '<=', 2, "at most toss_billing.engine_workers = 2 engine workers ($workers)");

# 2. what the workers and the queue show, while calls are slow
HTTP::Tiny->new->request('DELETE', "$url/__emulator/faults");
emu_post('/__emulator/faults',
	{ match => { method => 'POST', orderIdPrefix => 'slow-' }, fault => { latencyMs => 3000 } });
my @slow;
for my $i (1 .. 5)
{
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	$bg->query_until(qr/started/, qq(\\echo started
SELECT status FROM toss_billing.toss_charge('eng-001', 4900, '느림', 'slow-$i');
));
	push @slow, $bg;
}
$node->poll_query_until('postgres',
	"SELECT in_flight = 5 FROM toss_billing.engine_queue WHERE endpoint = 'toss_charge'")
  or die 'the slow calls did not show as in flight';
my $activity = $node->safe_psql('postgres',
	"SELECT string_agg(query, ' | ') FROM pg_stat_activity WHERE backend_type = 'toss_billing engine'");
like($activity, qr/toss_charge slow-\d of customer eng-001 \(at toss\)/, 'pg_stat_activity names the calls');
unlike($activity, qr/test_sk|Basic |billing\/[A-Za-z0-9_-]{20,}/, 'and shows no secret');
my $stats = $node->safe_psql('postgres', "SELECT in_flight FROM toss_billing.stats WHERE endpoint = 'charge'");
cmp_ok($stats, '>=', 5, "toss_billing.stats counts the charges in flight ($stats)")
  or diag($node->safe_psql('postgres', 'SELECT * FROM toss_billing.stats; SELECT * FROM toss_billing.engine_workers; SELECT * FROM toss_billing.engine_queue'));
my $reader = $node->safe_psql('postgres', q{
	SET ROLE reader;
	SELECT (SELECT count(*) FROM toss_billing.engine_queue) || ',' ||
	       (SELECT count(*) FROM toss_billing.engine_workers) || ',' ||
	       (SELECT count(*) FROM toss_billing.stats)});
like($reader, qr/^6,[12],7$/, 'the auditor reads engine_queue (one row per kind of call), engine_workers and stats');
for my $bg (@slow)
{
	$bg->{timeout}->start(60);
	$bg->{run}->pump until $bg->{stdout} =~ /DONE/ || $bg->{timeout}->is_expired;
	like($bg->{stdout}, qr/DONE/, 'a slow charge was made');
	$bg->quit;
}
HTTP::Tiny->new->request('DELETE', "$url/__emulator/faults");

# 3. toss_billing.stats: per endpoint and outcome, with a histogram
my $row = $node->safe_psql('postgres', q{
	SELECT calls, ok, in_flight, latency_seconds_count, latency_seconds_bucket[array_length(latency_seconds_bucket, 1)],
	       latency_seconds[array_length(latency_seconds, 1)]::text, latency_seconds_sum > 0
	  FROM toss_billing.stats WHERE endpoint = 'charge'});
my ($calls, $okc, $inflight, $count, $inf_bucket, $inf, $sum) = split /\|/, $row;
cmp_ok($calls, '>=', 517, "charges counted ($calls)");
is($okc, $calls, 'all of them ok');
is($inflight, '0', 'none in flight any more');
is($count, $calls, 'the histogram counts every call');
is($inf_bucket, $calls, 'its +Inf bucket holds them all');
is($inf, 'Infinity', 'and its last bound is +Inf');
is($sum, 't', 'latencies add up');
my ($rc, $o, $e) = $node->psql('postgres', 'SET ROLE clerk; SELECT toss_billing.stats_reset()');
like($e, qr/permission denied/, 'only the owner resets the statistics');
is($node->safe_psql('postgres', q{
	SELECT toss_billing.stats_reset() >= now();
	SELECT sum(calls) = 0 AND bool_and(stats_reset >= now() - interval '1 minute') FROM toss_billing.stats}),
	"t
t", 'stats_reset sets the counters back to zero');

# 4. A result bigger than a queue slot: a payment with many partial cancels
$node->safe_psql('postgres', "SELECT status FROM toss_billing.toss_charge('eng-002', 9000, '환불', 'refund-big')");
my $last;
for my $i (1 .. 14)
{
	$last = $node->safe_psql('postgres', qq{
		SELECT jsonb_array_length(raw->'cancels') || ',' || length(raw::text) || ',' || balance_amount
		  FROM toss_billing.toss_cancel('refund-big', '부분 환불 $i', 100)});
}
my ($n_cancels, $length, $balance) = split /,/, $last;
is($n_cancels, 14, 'the last cancel answer holds all 14 cancels');
cmp_ok($length, '>', 4096, "and it is bigger than a slot ($length bytes)");
is($balance, 9000 - 1400, 'the balance is what is left');

# 5. The lock pattern: serialise per customer with an advisory lock (or a row
# of the application's own table), never with a lock on toss_billing's rows.
$node->safe_psql('postgres', q{
	CREATE TABLE public.accounts (customer_key text PRIMARY KEY, charged integer NOT NULL DEFAULT 0);
	INSERT INTO public.accounts SELECT 'eng-' || lpad(i::text, 3, '0') FROM generate_series(1, 20) i;
	GRANT SELECT, UPDATE ON public.accounts TO clerk;
});
($ok, $out, $err, $secs) = pgbench(40, 5, q{
SELECT nextval('public.load_seq') AS n \gset
\set c random(1, 3)
BEGIN;
SELECT pg_advisory_xact_lock(hashtext('toss:eng-00' || :c));
SELECT status FROM toss_billing.toss_charge('eng-00' || :c, 1000, '직렬', 'serial-a-' || :n);
COMMIT;
BEGIN;
SELECT charged FROM public.accounts WHERE customer_key = 'eng-00' || :c FOR UPDATE;
SELECT status FROM toss_billing.toss_charge('eng-00' || :c, 1000, '직렬', 'serial-b-' || :n);
UPDATE public.accounts SET charged = charged + 1 WHERE customer_key = 'eng-00' || :c;
COMMIT;
});
ok($ok, sprintf('40 sessions serialising on 3 customers finished in %.1f s', $secs)) or diag("$out\n$err");
unlike($err, qr/ERROR|deadlock|aborted/, 'no deadlock, no error');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM toss_billing.payments WHERE order_id ~ '^serial-[ab]-' AND state = 'done'"),
	'400', 'all 400 serialised charges were made');
is($node->safe_psql('postgres', 'SELECT sum(charged) FROM public.accounts'), '200',
	'the application counted its 200 row-locked charges');

# the pattern to avoid: holding a lock on the customer's own row
$before = scalar @{ emu_get('/__emulator/requests?limit=10000') };
my $t0 = time;
($rc, $o, $e) = $node->psql('postgres', q{
	BEGIN;
	SELECT 1 FROM toss_billing.customers WHERE customer_key = 'eng-004' FOR UPDATE;
	SELECT toss_billing.toss_charge('eng-004', 1000, '교착', 'locked-own-row');
	ROLLBACK;});
my $locked_s = time - $t0;
like($e, qr/could not lock what it must record/, 'locking the customer row: a clear error');
like($e, qr/Nothing was recorded or sent to Toss/, 'and nothing happened');
cmp_ok($locked_s, '<', 20, sprintf('within the give-up time (%.1f s), not forever', $locked_s));
is($node->safe_psql('postgres', "SELECT count(*) FROM toss_billing.payments WHERE order_id = 'locked-own-row'"),
	'0', 'nothing recorded');
is(scalar @{ emu_get('/__emulator/requests?limit=10000') }, $before, 'nothing sent');
is($node->safe_psql('postgres', "SELECT status FROM toss_billing.toss_charge('eng-004', 1000, '교착', 'locked-own-row')"),
	'DONE', 'the same call without the lock goes through');

$sampler->quit;
$node->stop;
$emulator->kill_kill;
done_testing();
