# A Toss outage: every request hangs.  run_due returns within its
# time_budget however many calls hang (the unanswered attempts are recorded
# unknown, to be looked up by the next run), and so does a run that only
# looks unknown attempts up; a toss_charge caller still returns at its
# statement_timeout.  Once Toss is back, the next runs charge every period
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
my $node = toss_node('outage', max_worker_processes => 16);
issue_key($node, sprintf('out-%03d', $_)) for 1 .. 10;
my $plan = $node->safe_psql('postgres', "SELECT id FROM toss_billing.create_plan('장애 구독', 9900)");
$node->safe_psql('postgres', q{
	SELECT count(toss_billing.create_subscription('out-' || lpad((1 + i % 10)::text, 3, '0'), } . $plan . q{,
	                                              pg_catalog.now() - interval '1 minute'))
	  FROM generate_series(1, 100) i});

emu_post('/__emulator/faults', { match => { pathPrefix => '/v1/' }, fault => { hang => JSON::PP::true } });
my $t0 = time;
my $row = $node->safe_psql('postgres', q{
	SET toss_billing.max_concurrency = 16;
	CALL toss_billing.run_due(time_budget => '3 seconds')});
my $elapsed = time - $t0;
my ($claimed, $done, $failed, $unknown) = split /\|/, $row;
cmp_ok($elapsed, '<', 5, sprintf('a run with a budget of 3 s returned after %.1f s while every request hung', $elapsed));
cmp_ok($claimed, '>', 0, "it claimed $claimed periods");
is($unknown, $claimed, 'each one is recorded unknown');
is($done + $failed, 0, 'none counted as paid or failed');
is($node->safe_psql('postgres', "SELECT count(*) FROM toss_billing.attempts WHERE state = 'in_flight'"), '0',
	'nothing is left in flight');

# the next run only looks the unknown attempts up: the lookups hang too
$node->safe_psql('postgres', 'SELECT toss_billing.resolve_unknown_now()');
$t0 = time;
$row = $node->safe_psql('postgres', "CALL toss_billing.run_due(time_budget => '2 seconds')");
$elapsed = time - $t0;
cmp_ok($elapsed, '<', 4, sprintf('a run of lookups with a budget of 2 s returned after %.1f s', $elapsed));

# a toss_charge caller: its statement_timeout ends the wait
$t0 = time;
my ($rc, $out, $err) = $node->psql('postgres', q{SET statement_timeout = '1s';
	SELECT toss_billing.toss_charge('out-001', 4900, '장애', 'outage-call-1')});
$elapsed = time - $t0;
like($err, qr/canceling statement due to statement timeout/, 'a caller gets its statement_timeout');
cmp_ok($elapsed, '<', 2, sprintf('after %.1f s', $elapsed));

# Toss is back
HTTP::Tiny->new->request('DELETE', "$url/__emulator/faults");
for (1 .. 5)
{
	$node->safe_psql('postgres', 'SELECT toss_billing.resolve_unknown_now()');
	$node->safe_psql('postgres', 'CALL toss_billing.run_due()');
	last if $node->safe_psql('postgres', q{
		SELECT count(*) FROM toss_billing.payments WHERE subscription_id IS NOT NULL AND state = 'done'}) eq '100';
}
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM toss_billing.payments WHERE subscription_id IS NOT NULL AND state = 'done'}),
	'100', 'once Toss is back every period is paid');
my $ledger = emu_get('/__emulator/ledger');
my @subs = grep { /^sub/ } keys %{ $ledger->{doneByOrderId} };
is(scalar @subs, 100, 'the emulator charged 100 periods');
is(scalar @{ $ledger->{duplicateOrderIds} }, 0, 'none twice');
is($node->safe_psql('postgres', "SELECT count(*) FROM toss_billing.attempts WHERE state IN ('in_flight', 'unknown') AND order_id LIKE 'sub%'"),
	'0', 'no attempt is left open');

$node->stop;
$emulator->kill_kill;
done_testing();
