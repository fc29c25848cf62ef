# The runner's plans follow the tables it fills.  A first large run on a
# fresh installation starts on invoice and ledger tables analyzed while
# empty: plans made for them scan those tables whole, and kept for the whole
# run they read them again and again as they grow (quadratic in the run's
# size).  The runner makes its plans again as the tables grow, so the first
# run's sequential scans are of small tables only; and later, with a long
# history, the claim finds the open invoices by their own index instead of
# reading every invoice.  Counted: rows read by sequential scans
# (pg_stat_user_tables), per charge.
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
my $seq_read = sub {
	$node->safe_psql('postgres', qq{
		SELECT pg_stat_force_next_flush();
		SELECT COALESCE(sum(seq_tup_read), 0) FROM pg_stat_user_tables
		 WHERE schemaname = 'toss_billing' AND relname IN ($tables)});
};

# One run of the runner over the periods due; returns the rows its
# sequential scans of those tables read per charge.
my $run = sub {
	my ($what) = @_;
	my $before = $seq_read->();
	my $out = $node->safe_psql('postgres', q{
		SET toss_billing.max_concurrency = 64;
		CALL toss_billing.run_due(max_charges => 100000, time_budget => '5 min')});
	like($out, qr/^$subscriptions\|$subscriptions\|0\|0\|/, "$what: the run charged all $subscriptions periods");
	# the runner and the recorder flush their statistics as they exit
	my $read;
	for (1 .. 50)
	{
		$read = $seq_read->() - $before;
		last if $read > 0 && $read == $seq_read->() - $before;
		sleep 0.2;
	}
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

$node->stop;
done_testing();
