# The postmaster dies (kill -9) while the runner and the engine are busy
# calling Toss: every process of the server notices and exits at once, so
# nothing goes on calling Toss for a server that is gone (the emulator's
# request log stops growing).  After a restart, recovery settles every
# attempt the crash left open: each charge made at Toss is in the ledger
# exactly once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use Time::HiRes qw(time sleep);
use TossTest;

my ($url, $emulator) = start_emulator();
my $node = toss_node('pmdeath', max_worker_processes => 16, max_connections => 50);
my $customers = 20;
issue_key($node, sprintf('pm-%03d', $_)) for 1 .. $customers;
my $plan = $node->safe_psql('postgres', "SELECT id FROM toss_billing.create_plan('사망 구독', 9900)");
$node->safe_psql('postgres', qq{
	SELECT count(toss_billing.create_subscription('pm-' || lpad((1 + i % $customers)::text, 3, '0'), $plan,
	                                              pg_catalog.now() - interval '1 minute'))
	  FROM generate_series(1, 400) i});
emu_post('/__emulator/faults',
	{ match => { method => 'POST', pathPrefix => '/v1/billing/' }, fault => { latencyMs => 300 } });

sub requests
{
	return emu_get('/__emulator/stats')->{requests};
}

# the runner, and ten sessions charging one call after another through the engine
my $runner = $node->background_psql('postgres', on_error_stop => 0);
$runner->query_until(qr/go/, "\\echo go\nSET toss_billing.max_concurrency = 8;\nCALL toss_billing.run_due();\n");
my @callers;
for my $c (1 .. 10)
{
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	$bg->query_until(qr/go/, qq(\\echo go
DO \$\$ BEGIN FOR i IN 1..1000 LOOP
  PERFORM toss_billing.toss_charge('pm-' || lpad((1 + (i + $c) % $customers)::text, 3, '0'), 1000, '호출', 'pm-call-$c-' || i);
END LOOP; END \$\$;
));
	push @callers, $bg;
}
$node->poll_query_until('postgres', q{
	SELECT count(*) FILTER (WHERE subscription_id IS NOT NULL) >= 16 AND count(*) FILTER (WHERE subscription_id IS NULL) >= 20
	  FROM toss_billing.payments WHERE state = 'done'})
  or die 'the runner and the engine did not get going';
my @pids = split /\n/, $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type IN ('client backend', 'toss_billing engine', 'toss_billing outcome recorder') AND pid <> pg_backend_pid()");
my $engines = $node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'toss_billing engine'");
cmp_ok($engines, '>=', 1, 'engine workers are busy');
cmp_ok(scalar @pids, '>=', 12, 'the runner, the callers and the workers are running (' . scalar(@pids) . ' processes)');

$node->kill9;
my $t_kill = time;
# every process sees the postmaster gone at its next wait
my $alive = 1;
for (1 .. 50)
{
	$alive = grep { kill(0, $_) } @pids;
	last if $alive == 0;
	sleep 0.1;
}
is($alive, 0, sprintf('every backend and worker exited after the postmaster died (%.1f s)', time - $t_kill));
sleep 1;
my $after = requests();
sleep 3;
is(requests(), $after, 'no request reached Toss once they were gone');
$_->{run}->kill_kill for ($runner, @callers);

# restart: recovery settles what the crash left open
$node->start;
HTTP::Tiny->new->request('DELETE', "$url/__emulator/faults");
for (1 .. 6)
{
	$node->safe_psql('postgres', 'SELECT toss_billing.resolve_unknown_now()');
	$node->safe_psql('postgres', 'CALL toss_billing.run_due()');
	last if $node->safe_psql('postgres',
		"SELECT count(*) FROM toss_billing.attempts WHERE state IN ('in_flight', 'unknown')") eq '0';
}
is($node->safe_psql('postgres', "SELECT count(*) FROM toss_billing.attempts WHERE state IN ('in_flight', 'unknown')"),
	'0', 'recovery settled every attempt the crash left open');
my $ledger = emu_get('/__emulator/ledger');
is(scalar @{ $ledger->{duplicateOrderIds} }, 0, 'no order was charged twice');
my %ours = map { $_ => 1 } split /\n/, $node->safe_psql('postgres',
	"SELECT order_id FROM toss_billing.payments WHERE state = 'done'");
my @missing = grep { !$ours{$_} } keys %{ $ledger->{doneByOrderId} };
is(scalar @missing, 0, 'every charge made at Toss is in the ledger as paid') or diag("@missing");
is($node->safe_psql('postgres', "SELECT count(*) FROM toss_billing.payments WHERE state = 'done'"),
	scalar(keys %{ $ledger->{doneByOrderId} }), 'and the ledger has no paid order Toss did not charge');

$node->stop;
$emulator->kill_kill;
done_testing();
