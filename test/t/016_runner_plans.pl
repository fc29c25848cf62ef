# The runner's plans follow the tables it fills.  A first large run on a
# fresh installation starts on invoice and ledger tables analyzed while
# empty: plans made for them scan those tables whole, and kept for the whole
# run they read them again and again as they grow (quadratic in the run's
# size).  The runner makes its plans again as the tables grow, so the first
# run's sequential scans are of small tables only; and later, with a long
# history, the claim finds the open invoices by their own index instead of
# reading every invoice.  Counted: rows read by sequential scans
# (pg_stat_user_tables), per charge.  With that long history, an
# obligation's orders are found by an index, not among the customer's or
# the whole ledger's, and a new order of toss_charge is written as few times
# as it can be.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TossTest;

my ($url, $emulator) = start_emulator();
my $node = toss_node('plans', max_worker_processes => 16);

my $customers = 50;
my $subscriptions = 4000;
issue_key($node, sprintf('rp-%03d', $_)) for 1 .. $customers;
my $plan = $node->safe_psql('postgres', "SELECT id FROM toss_billing.create_plan('월간 구독', 9900)");
$node->safe_psql('postgres', "SELECT toss_billing.freeze_clock(pg_catalog.now())");
$node->safe_psql('postgres', qq{
	SELECT count(toss_billing.create_subscription(
	           'rp-' || lpad((1 + i % $customers)::text, 3, '0'), $plan, pg_catalog.now() - interval '1 minute'))
	  FROM generate_series(1, $subscriptions) i});
# as on a fresh installation whose tables were analyzed before any billing
$node->safe_psql('postgres', 'ANALYZE');

my $tables = q{'invoices', 'invoice_items', 'payments', 'attempts'};
# Rows of the tables read so far by the scans counted in $what (a sum of
# pg_stat_user_tables columns).
my $rows_read = sub {
	my ($what, $relnames) = @_;
	$node->safe_psql('postgres', qq{
		SELECT pg_stat_force_next_flush();
		SELECT COALESCE(sum($what), 0) FROM pg_stat_user_tables
		 WHERE schemaname = 'toss_billing' AND relname IN ($relnames)});
};
# The rows read since $before, once the count has stopped moving: the
# runner and the recorder report their statistics as they exit, the engine
# workers as they go idle.
my $settled = sub {
	my ($what, $relnames, $before) = @_;
	my ($read, $last) = (0, -1);
	for (1 .. 50)
	{
		$read = $rows_read->($what, $relnames) - $before;
		last if $read > 0 && $read == $last;
		$last = $read;
		sleep 0.3;
	}
	return $read;
};

# One run of the runner over the periods due; returns the rows its
# sequential scans of those tables read per charge.
my $run = sub {
	my ($what) = @_;
	my $before = $rows_read->('seq_tup_read', $tables);
	my $out = $node->safe_psql('postgres', q{
		SET toss_billing.max_concurrency = 64;
		CALL toss_billing.run_due(max_charges => 100000, time_budget => '5 min')});
	like($out, qr/^$subscriptions\|$subscriptions\|0\|0\|/, "$what: the run charged all $subscriptions periods");
	my $read = $settled->('seq_tup_read', $tables, $before);
	note("$what: rows read by sequential scans of $tables: $read");
	return $read / $subscriptions;
};

# The first run: made for empty tables, plans would scan them whole for
# the whole run (about 5,900 rows per charge at this size, and growing with
# it); made again as they grow, the scans are of small tables only.
cmp_ok($run->('first run'), '<', 200, 'first run: sequential scans read fewer than 200 rows per charge');

# A month on, with the tables analyzed full of paid history: the claim
# finds the open invoices by their index, not by reading every invoice.
$node->safe_psql('postgres', 'ANALYZE');
$node->safe_psql('postgres', "SELECT toss_billing.advance_clock('1 month')");
cmp_ok($run->('renewals'), '<', 50, 'renewals: sequential scans read fewer than 50 rows per charge');
is($node->safe_psql('postgres', "SELECT count(*) FROM toss_billing.payments WHERE state = 'done'"),
	2 * $subscriptions, 'the ledger has both periods of every subscription paid');

# With that history (8,000 orders, 160 of each customer), finding an
# obligation's orders reads those orders alone, by an index: neither the
# customer's other orders nor the whole ledger.  Counted: rows of payments
# read by sequential and index scans, per call, for a toss_charge of a new
# order id (its intent looks for the obligation's live and failed orders),
# order_status(), and charge_invoice_now of a one-off line (the claim looks
# for the invoice's latest order).
my $scans = 'seq_tup_read + COALESCE(idx_tup_fetch, 0)';
# rows of payments read per call by $calls calls made by the statements
my $read_per_call = sub {
	my ($what, $calls, @sql) = @_;
	my $before = $rows_read->($scans, q{'payments'});
	$node->safe_psql('postgres', $_) for @sql;
	my $read = $settled->($scans, q{'payments'}, $before);
	note("$what: rows of payments read: $read for $calls calls");
	return $read / $calls;
};
is($node->safe_psql('postgres', "SELECT count(*) FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id WHERE c.customer_key = 'rp-001'"),
	2 * $subscriptions / $customers, 'the customer has its share of the history');
my $updated_before = $rows_read->('n_tup_upd', q{'payments'});
cmp_ok($read_per_call->('toss_charge', 20,
		q{SELECT count(*) FROM generate_series(1, 20) i,
		         LATERAL toss_billing.toss_charge('rp-001', 1000, '추가 결제', 'rp-tc-' || i) c WHERE c.status = 'DONE'}),
	'<', 30, 'toss_charge: fewer than 30 rows of payments read per call, not the customer\'s orders');
# and each new order is written twice: made in flight by the intent, then
# changed once by its outcome (not made pending and updated at once)
is($settled->('n_tup_upd', q{'payments'}, $updated_before), 20,
	'toss_charge: each new order is updated once, by its outcome');
cmp_ok($read_per_call->('order_status', 20,
		q{SELECT count(*) FROM generate_series(1, 20) i, LATERAL toss_billing.order_status('rp-tc-' || i) s WHERE s.paid}),
	'<', 30, 'order_status: fewer than 30 rows of payments read per call, not the ledger');
my @drafts = split /\n/, $node->safe_psql('postgres', q{
	SELECT (toss_billing.add_invoice_item(s.id, 2000, '추가 항목')).invoice_id
	  FROM (SELECT id FROM toss_billing.subscriptions ORDER BY id LIMIT 5) s ORDER BY 1});
is(scalar(@drafts), 5, 'five one-off lines, each on its subscription\'s next invoice');
cmp_ok($read_per_call->('charge_invoice_now', 5,
		map { "SELECT (toss_billing.charge_invoice_now($_)).status" } @drafts),
	'<', 30, 'charge_invoice_now: fewer than 30 rows of payments read per call, not the ledger');
is($node->safe_psql('postgres', "SELECT count(*) FROM toss_billing.invoices WHERE kind = 'one_off' AND status = 'paid'"),
	'5', 'the five one-off lines were charged, each as an invoice of its own');

$node->stop;
done_testing();
