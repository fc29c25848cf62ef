# The outcome recorder: the runner hands its outcomes to a background worker
# of its own.  Terminated in the middle of a run, it stops the runner with a
# clear error, and the next run settles every attempt left open: nothing is
# lost or charged twice.  Switched off, or with no free worker slot, the
# runner records its outcomes itself.  The victim of a deadlock, it records
# its batch again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use Time::HiRes qw(time sleep);
use TossTest;

my ($url, $emulator) = start_emulator();
# deadlocks are found after 3 s: long enough to set one up on purpose (5)
my $node = toss_node('recorder', max_worker_processes => 16, deadlock_timeout => "'3s'");
my $customers = 20;
issue_key($node, sprintf('rec-%03d', $_)) for 1 .. $customers;
my $plan = $node->safe_psql('postgres', "SELECT id FROM toss_billing.create_plan('기록 구독', 9900)");

# n subscriptions whose first period is due now
sub make_due
{
	my ($n) = @_;
	$node->safe_psql('postgres', qq{
		SELECT count(toss_billing.create_subscription(
		           'rec-' || lpad((1 + i % $customers)::text, 3, '0'), $plan,
		           pg_catalog.now() - interval '1 minute'))
		  FROM generate_series(1, $n) i});
}

sub latency
{
	my ($ms) = @_;
	HTTP::Tiny->new->request('DELETE', "$url/__emulator/faults");
	emu_post('/__emulator/faults',
		{ match => { method => 'POST', pathPrefix => '/v1/billing/' }, fault => { latencyMs => $ms } })
	  if $ms;
}

sub count_done
{
	return $node->safe_psql('postgres', "SELECT count(*) FROM toss_billing.payments WHERE state = 'done'");
}

sub recorders
{
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'toss_billing outcome recorder'");
}

# Starts CALL run_due() in the background at concurrency 8.
sub start_run
{
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	$bg->{pid} = $bg->query_safe('SELECT pg_backend_pid()');
	$bg->query_until(qr/go/, "\\echo go\nSET toss_billing.max_concurrency = 8;\nCALL toss_billing.run_due();\n\\echo finished\n");
	return $bg;
}

sub wait_run
{
	my ($bg) = @_;
	$bg->{timeout}->start(120);
	$bg->{run}->pump until $bg->{stdout} =~ /finished/ || $bg->{timeout}->is_expired;
	my $stderr = $bg->{stderr};
	$bg->quit;
	# the runner's attempts count as abandoned once its process has gone
	$node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $bg->{pid}")
	  or die 'the runner did not exit';
	return $stderr;
}

# 1. By default a recorder runs beside the runner and writes the outcomes.
make_due(80);
latency(150);
my $bg = start_run();
my $seen = 0;
for (1 .. 200)
{
	$seen = 1, last if recorders() > 0;
	sleep 0.02;
}
is(wait_run($bg), '', 'a run with a recorder ends without error');
ok($seen, 'an outcome recorder ran beside the runner');
is(count_done(), 80, 'every due period of the run is paid');
is(recorders(), 0, 'the recorder exits with the run');

# 2. The recorder is terminated mid-run: the runner stops with a clear error.
make_due(160);
latency(200);
$bg = start_run();
$node->poll_query_until('postgres', 'SELECT count(*) > 100 FROM toss_billing.payments WHERE state = \'done\'')
  or die 'the recorder committed nothing';
is($node->safe_psql('postgres', q{
	SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
	 WHERE backend_type = 'toss_billing outcome recorder'}), 1, 'the recorder is terminated');
like(wait_run($bg), qr/the toss_billing outcome recorder stopped/, 'the runner reports that its recorder stopped');
my $open = $node->safe_psql('postgres',
	"SELECT count(*) FROM toss_billing.payments WHERE state IN ('in_flight', 'unknown')");
cmp_ok($open, '>', 0, "attempts the recorder did not commit are left open ($open)");

# The next runs (the runner's session has ended) look them up and finish.  A
# call still held at Toss when the runner stopped may need a second look.
latency(0);
my $left;
for (1 .. 20)
{
	$node->safe_psql('postgres', 'SELECT toss_billing.resolve_unknown_now()');
	$node->safe_psql('postgres', 'CALL toss_billing.run_due()');
	$left = $node->safe_psql('postgres', "SELECT count(*) FROM toss_billing.payments WHERE state <> 'done'");
	last if $left == 0;
	sleep 0.5;
}
is($left, 0, 'recovery leaves nothing open');
is(count_done(), 240, 'every due period is paid once the next run has recovered');

my $ledger = emu_get('/__emulator/ledger');
my %done = map { $_ => 1 } split /\n/, $node->safe_psql('postgres',
	"SELECT order_id FROM toss_billing.payments WHERE state = 'done'");
is(scalar(@{ $ledger->{duplicateOrderIds} }), 0, 'no order was charged twice at Toss');
is($ledger->{totalDone}, 240, 'Toss made exactly one charge per due period');
is(scalar(grep { !$done{$_} } keys %{ $ledger->{doneByOrderId} }), 0,
	'every charge Toss made is a done row in the ledger');

# 3. Switched off: the runner records its outcomes itself.
make_due(40);
latency(0);
$node->safe_psql('postgres', 'SET toss_billing.outcome_recorder = off; CALL toss_billing.run_due()');
is(count_done(), 280, 'with the recorder off every due period is paid');

# 4. A deadlock with another session: the recorder, which locks the
# subscription and then the payment, waits for a session holding the payment
# that then asks for the subscription.  The recorder is the deadlock's
# victim (it waited first), takes its batch again, and the run ends well.
make_due(1);
latency(1500);
$bg = start_run();
$node->poll_query_until('postgres', "SELECT count(*) = 1 FROM toss_billing.payments WHERE state = 'in_flight'")
  or die 'no attempt in flight';
my ($payment, $subscription) = split /\|/, $node->safe_psql('postgres',
	"SELECT id, subscription_id FROM toss_billing.payments WHERE state = 'in_flight'");
my $log_offset = -s $node->logfile;
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN');
$locker->query_safe("SELECT id FROM toss_billing.payments WHERE id = $payment FOR UPDATE");
$node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'toss_billing outcome recorder' AND wait_event_type = 'Lock'})
  or die 'the recorder never waited for the payment';
$locker->query_safe("SELECT id FROM toss_billing.subscriptions WHERE id = $subscription FOR UPDATE");
$locker->query_safe('COMMIT');
$locker->quit;
is(wait_run($bg), '', 'the run ends without error after its recorder lost a deadlock');
like(slurp_file($node->logfile, $log_offset), qr/deadlock detected; recording the batch of 1 again/,
	'the recorder took its batch again');
is(count_done(), 281, 'the outcome was recorded');

# 5. No free worker slot: logged, and the runner records its outcomes itself.
latency(0);
$node->append_conf('postgresql.conf', "max_worker_processes = 1\n");
$node->restart;
make_due(40);
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'CALL toss_billing.run_due()');
is(count_done(), 321, 'with no worker slot every due period is paid');
like(slurp_file($node->logfile, $log_offset), qr/no free worker slot for an outcome recorder/,
	'the missing recorder is logged');

$node->stop;
$emulator->kill_kill;
done_testing();
