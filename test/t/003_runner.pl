# The scheduled charge runner: four runners at once over 500 due
# subscriptions (catching up on missed periods) charge every period exactly
# once, as the emulator's own ledger confirms; and pg_cron itself fires the
# runner.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TossTest;

my ($url, $emulator) = start_emulator();
my $node = toss_node('runner', max_worker_processes => 16);
$node->safe_psql('postgres', 'CREATE EXTENSION pg_cron');

my $customers = 100;
my $subscriptions = 500;
issue_key($node, sprintf('rc-%03d', $_)) for 1 .. $customers;
my $plan = $node->safe_psql('postgres', "SELECT id FROM toss_billing.create_plan('월간 구독', 9900)");

# Frozen clock: subscriptions start now, then two months pass without a run.
$node->safe_psql('postgres', qq{
	SELECT toss_billing.freeze_clock('2026-01-31 10:00+09');
	SELECT count(toss_billing.create_subscription(
	           'rc-' || lpad((1 + i % $customers)::text, 3, '0'), $plan))
	  FROM generate_series(1, $subscriptions) i;
	SELECT toss_billing.advance_clock('2 months');
});
emu_post('/__emulator/faults',
	{ match => { method => 'POST', pathPrefix => '/v1/billing/' }, fault => { latencyMs => 20 } });

my @runners = map { $node->background_psql('postgres', on_error_stop => 0) } 1 .. 4;
for my $bg (@runners)
{
	$bg->query_until(qr/go/, q(\echo go
SET toss_billing.max_concurrency = 16;
CALL toss_billing.run_due();
\echo finished
));
}
for my $bg (@runners)
{
	$bg->{timeout}->start(300);
	$bg->{run}->pump until $bg->{stdout} =~ /finished/ || $bg->{timeout}->is_expired;
	unlike($bg->{stderr}, qr/ERROR/, 'a runner finished without error');
	$bg->quit;
}

my $expected = $subscriptions * 3;	# periods 0, 1 and 2 are due after two months
is($node->safe_psql('postgres', "SELECT count(*) FROM toss_billing.payments WHERE state = 'done'"),
	$expected, "the ledger has $expected paid periods");
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT subscription_id, period_number FROM toss_billing.payments
	                       WHERE state = 'done' GROUP BY 1, 2 HAVING count(*) > 1) d}),
	0, 'no period is paid twice in the ledger');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM toss_billing.payments WHERE state <> 'done'"),
	0, 'no attempt failed or is left open');
is($node->safe_psql('postgres',
	"SELECT string_agg(DISTINCT period_number::text, ',') FROM toss_billing.subscriptions"),
	'3', 'every subscription caught up to its current period');

my $ledger = emu_get('/__emulator/ledger');
is($ledger->{totalDone}, $expected, 'the emulator made exactly that many charges');
is(scalar @{ $ledger->{duplicateOrderIds} }, 0, 'the emulator saw no order charged twice');
my %ours = map { $_ => 1 } split /\n/, $node->safe_psql('postgres',
	"SELECT order_id FROM toss_billing.payments WHERE state = 'done'");
my @missing = grep { !$ours{$_} } keys %{ $ledger->{doneByOrderId} };
is(scalar @missing, 0, 'every charge at the emulator is in the ledger');

# pg_cron fires the runner; the job's command carries no secret.
my $job = $node->safe_psql('postgres', "SELECT toss_billing.schedule('* * * * *')");
ok($job > 0, 'scheduled with pg_cron');
is($node->safe_psql('postgres', "SELECT command FROM cron.job WHERE jobid = $job"),
	'CALL toss_billing.run_due()', 'the cron command is just the CALL');
$node->safe_psql('postgres', qq{
	SELECT toss_billing.create_subscription('rc-001', $plan, toss_billing.now(),
	                                        metadata => '{"via": "pg_cron"}')});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM toss_billing.payments p JOIN toss_billing.subscriptions s
	    ON s.id = p.subscription_id
	 WHERE s.metadata->>'via' = 'pg_cron' AND p.state = 'done'}, 't'),
	'pg_cron fired the runner and the new subscription was charged');
is($node->safe_psql('postgres', qq{
	SELECT count(*) > 0 FROM cron.job_run_details WHERE jobid = $job AND status = 'succeeded'}),
	't', 'pg_cron recorded a successful run');
$node->safe_psql('postgres', 'SELECT toss_billing.unschedule()');
is($node->safe_psql('postgres', 'SELECT count(*) FROM cron.job'), '0', 'unscheduled');

$node->stop;
$emulator->kill_kill;
done_testing();
