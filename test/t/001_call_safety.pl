# A charge is never lost to what happens to the caller: cancel,
# statement_timeout, a killed engine worker, a crashed server; and a call
# the engine cannot take (a full queue, no worker slot at all) fails only
# where a bound says so, before anything is recorded or sent.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use Time::HiRes qw(time sleep);
use TossTest;

my ($url, $emulator) = start_emulator();
my $node = toss_node('safety');
is(issue_key($node, 'cust-safety'), 'active', 'billing key issued');

sub ledger
{
	my ($order) = @_;
	return $node->safe_psql('postgres',
		"SELECT state FROM toss_billing.payments WHERE order_id = '$order'");
}

# Run SQL in a background session; returns its stderr.
sub bg_run
{
	my ($bg, $sql) = @_;
	$bg->{stderr} = '';
	$bg->query($sql);
	return $bg->{stderr};
}

sub slow
{
	my ($order, $ms) = @_;
	emu_post('/__emulator/faults',
		{ match => { method => 'POST', orderId => $order }, fault => { latencyMs => $ms } });
}

# pg_cancel_backend during the call: the caller returns within 1 s, the
# worker still records the outcome.
slow('order-cancel-1', 4000);
my $bg = $node->background_psql('postgres', on_error_stop => 0);
my $caller_pid = $bg->query_safe('SELECT pg_backend_pid()');
$bg->query_until(qr/started/, q(\echo started
SELECT status FROM toss_billing.toss_charge('cust-safety', 4900, 'cancel', 'order-cancel-1');
));
$node->poll_query_until('postgres',
	"SELECT state = 'in_flight' FROM toss_billing.payments WHERE order_id = 'order-cancel-1'")
  or die 'the attempt was not recorded before the call';
my $t0 = time;
$node->safe_psql('postgres', "SELECT pg_cancel_backend($caller_pid)");
my $stderr = bg_run($bg, 'SELECT 1 AS back');
my $cancel_s = time - $t0;
like($stderr, qr/canceling statement due to user request/, 'cancel reaches the caller');
cmp_ok($cancel_s, '<', 1.0, sprintf('caller freed %.3f s after pg_cancel_backend', $cancel_s));
is(ledger('order-cancel-1'), 'in_flight', 'attempt is in the ledger while Toss works');
$node->poll_query_until('postgres',
	"SELECT state = 'done' FROM toss_billing.payments WHERE order_id = 'order-cancel-1'")
  or die 'outcome never recorded';
pass('after the cancel the worker recorded the charge as done');

# statement_timeout: same, within 1 s of the deadline.
slow('order-timeout-1', 4000);
$t0 = time;
$stderr = bg_run($bg, q(SET statement_timeout = '500ms';
SELECT status FROM toss_billing.toss_charge('cust-safety', 4900, 'timeout', 'order-timeout-1');));
my $timeout_s = time - $t0;
like($stderr, qr/canceling statement due to statement timeout/, 'statement_timeout ends the wait');
cmp_ok($timeout_s, '<', 1.5, sprintf('statement_timeout of 0.5 s returned after %.3f s', $timeout_s));
bg_run($bg, 'RESET statement_timeout');
$node->poll_query_until('postgres',
	"SELECT state = 'done' FROM toss_billing.payments WHERE order_id = 'order-timeout-1'")
  or die 'outcome never recorded';
pass('after the timeout the worker recorded the charge as done');

# The worker is terminated mid-call: the caller gets a clear error and the
# attempt stays in_flight for recovery, never vanishes.
emu_post('/__emulator/faults',
	{ match => { method => 'POST', orderId => 'order-killed-1' }, fault => { hang => JSON::PP::true } });
$bg->query_until(qr/started/, q(\echo started
SELECT status FROM toss_billing.toss_charge('cust-safety', 4900, 'killed', 'order-killed-1');
));
$node->poll_query_until('postgres',
	"SELECT state = 'in_flight' FROM toss_billing.payments WHERE order_id = 'order-killed-1'")
  or die 'attempt not recorded';
$node->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'toss_billing engine'");
$stderr = bg_run($bg, 'SELECT 1');
like($stderr, qr/the toss_billing worker exited without a result/, 'caller told the worker died');
is(ledger('order-killed-1'), 'in_flight', 'a killed call stays in_flight in the ledger');
$bg->quit;

# An immediate stop of the whole server during a call: the intent survives.
emu_post('/__emulator/faults',
	{ match => { method => 'POST', orderId => 'order-crash-1' }, fault => { hang => JSON::PP::true } });
my $bg2 = $node->background_psql('postgres', on_error_stop => 0);
$bg2->query_until(qr/started/, q(\echo started
SELECT status FROM toss_billing.toss_charge('cust-safety', 4900, 'crash', 'order-crash-1');
));
$node->poll_query_until('postgres',
	"SELECT state = 'in_flight' FROM toss_billing.payments WHERE order_id = 'order-crash-1'")
  or die 'attempt not recorded';
$node->stop('immediate');
eval { $bg2->quit };
$node->start;
is(ledger('order-crash-1'), 'in_flight', 'after a crash the attempt is still in the ledger');

sub requests_sent
{
	return scalar @{ emu_get('/__emulator/requests?limit=10000') };
}

# A full queue: the calls beyond it wait; with toss_billing.queue_timeout a
# call that could not get in fails with 53000, and one that waited past its
# statement_timeout is canceled (57014) -- both before anything is recorded
# or sent.
$node->append_conf('postgresql.conf', "toss_billing.queue_depth = 16\n");
$node->restart;
my @fill = hung_charges($node, 'postgres', 'cust-safety', 'order-fill-', 16, '4s');
is($node->safe_psql('postgres', "SELECT sum(running) FROM toss_billing.engine_queue"), '16',
	'engine_queue shows the 16 calls running');
my $before = requests_sent();
$t0 = time;
my ($rc, $out, $err) = $node->psql('postgres', q(SET toss_billing.queue_timeout = '300ms';
SELECT toss_billing.toss_charge('cust-safety', 4900, 'full', 'order-full-1')));
my $full_s = time - $t0;
like($err, qr/did not take the call within toss_billing\.queue_timeout/, 'full queue with a bound: clear error');
like($err, qr/Nothing was recorded or sent to Toss/, 'full queue: says nothing happened');
cmp_ok($full_s, '<', 1.5, sprintf('the bound of 0.3 s returned after %.3f s', $full_s));
($rc, $out, $err) = $node->psql('postgres', q(SET statement_timeout = '300ms';
SELECT toss_billing.toss_charge('cust-safety', 4900, 'full', 'order-full-2')));
like($err, qr/canceling statement due to statement timeout/, 'full queue without a bound: statement_timeout ends the wait');
is(ledger('order-full-1') . ledger('order-full-2'), '', 'full queue: nothing recorded');
is(requests_sent(), $before, 'full queue: nothing sent');
# the filling calls end (their requests time out: TB006, to be looked up)
for my $f (@fill)
{
	$f->{timeout}->start(60);
	$f->{run}->pump until $f->{stderr} =~ /TB006|outcome of the charge/ || $f->{timeout}->is_expired;
	$f->quit;
}
HTTP::Tiny->new->request('DELETE', "$url/__emulator/faults");
is($node->safe_psql('postgres', "SELECT status FROM toss_billing.toss_charge('cust-safety', 4900, 'after', 'order-after-full')"),
	'DONE', 'once the queue has room, calls go through');

# No worker slot at all (pg_cron's launcher holds the only one): calls wait
# for an engine worker; the bound ends the wait with a clear error, nothing
# recorded or sent, and the server log says why.
$node->append_conf('postgresql.conf', "max_worker_processes = 1\n");
$node->restart;
$before = requests_sent();
my $log_offset = -s $node->logfile;
($rc, $out, $err) = $node->psql('postgres', q(SET toss_billing.queue_timeout = '1s';
SELECT toss_billing.toss_charge('cust-safety', 4900, 'no slot', 'order-noslot-1')));
like($err, qr/did not take the call within toss_billing\.queue_timeout/, 'no worker slot: clear error');
like($err, qr/Nothing was recorded or sent to Toss/, 'no worker slot: says nothing happened');
is(ledger('order-noslot-1'), '', 'no worker slot: nothing recorded');
is(requests_sent(), $before, 'no worker slot: nothing sent');
like(slurp_file($node->logfile, $log_offset), qr/no free background worker slot for an engine worker/,
	'no worker slot: logged');

$node->stop;
$emulator->kill_kill;
done_testing();
