# A charge is never lost to what happens to the caller: cancel,
# statement_timeout, a killed worker, a crashed server, no free worker slot.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
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
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'toss_billing worker'");
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

# No free worker slot: a clear error before anything is recorded or sent.
$node->append_conf('postgresql.conf', "max_worker_processes = 2\n");
$node->restart;
my $before = scalar @{ emu_get('/__emulator/requests?limit=1000') };
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT toss_billing.toss_charge('cust-safety', 4900, 'no slot', 'order-noslot-1')");
like($err, qr/could not start a toss_billing worker/, 'no worker slot: clear error');
like($err, qr/Nothing was recorded or sent to Toss/, 'no worker slot: says nothing happened');
is(ledger('order-noslot-1'), '', 'no worker slot: nothing recorded');
is(scalar @{ emu_get('/__emulator/requests?limit=1000') }, $before, 'no worker slot: nothing sent');

$node->stop;
$emulator->kill_kill;
done_testing();
