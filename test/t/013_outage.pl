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

# An ambiguous answer is looked up on the multi handle like any call: a
# lookup that hangs holds up nothing else.  One period's POST is reset (the
# runner cannot tell whether Toss made the charge) and its lookup hangs;
# the other 19 go on through 4 slots at 300 ms each and are all paid long
# before the budget ends (a blocking lookup would have frozen them until
# the budget ended, and they would have been given up unknown).
my ($first) = $node->safe_psql('postgres', q{
	SELECT min(id) FROM (
	  SELECT (toss_billing.create_subscription('out-' || lpad((1 + i % 10)::text, 3, '0'), } . $plan . q{,
	                                           pg_catalog.now() - interval '1 minute')).id
	    FROM generate_series(1, 20) i) s});
emu_post('/__emulator/faults', { match => { method => 'POST', orderIdPrefix => "sub$first-" }, fault => { reset => JSON::PP::true } });
emu_post('/__emulator/faults', { match => { method => 'GET', orderIdPrefix => "sub$first-" }, fault => { hang => JSON::PP::true } });
emu_post('/__emulator/faults', { match => { method => 'POST', pathPrefix => '/v1/billing/' }, fault => { latencyMs => 300 } });
$t0 = time;
$row = $node->safe_psql('postgres', q{
	SET toss_billing.max_concurrency = 4;
	CALL toss_billing.run_due(time_budget => '6 seconds')});
$elapsed = time - $t0;
($claimed, $done, $failed, $unknown) = split /\|/, $row;
cmp_ok($elapsed, '<', 8, sprintf('a run whose one lookup hangs returned after %.1f s (budget 6 s)', $elapsed));
is("$claimed|$done|$failed|$unknown", '20|19|0|1', 'the other 19 periods were paid, the one looked up is unknown');
my $paid_within = $node->safe_psql('postgres', qq{
	SELECT round(extract(epoch FROM max(a.updated_at) - min(a.created_at))::numeric, 1)
	  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
	 WHERE p.subscription_id > $first AND p.subscription_id < $first + 20 AND a.state = 'done'});
cmp_ok($paid_within, '<', 4, "all 19 were paid within $paid_within s of their claim, while the lookup hung");
like($node->safe_psql('postgres', qq{
	SELECT a.state || ': ' || a.failure_message
	  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
	 WHERE p.subscription_id = $first}), qr/^unknown: (connection failure .* the lookup by order id gave timeout after \d+ ms|the run's time budget ended before Toss answered)/,
	'the hung lookup ended with the budget (its timeout is what is left of it): unknown');
HTTP::Tiny->new->request('DELETE', "$url/__emulator/faults");
$node->safe_psql('postgres', 'SELECT toss_billing.resolve_unknown_now()');
$node->safe_psql('postgres', 'CALL toss_billing.run_due()');
is($node->safe_psql('postgres', qq{SELECT state FROM toss_billing.payments WHERE subscription_id = $first}), 'done',
	'the next run looked it up and paid it');

# Unknown cancels are replayed concurrently, within the budget too: a cancel
# whose request and replay were both reset is unknown; during an outage
# run_due's replay hangs and the run still ends at its budget, the cancel
# still unknown; once Toss is back it is made, once.
$node->safe_psql('postgres', q{SELECT status FROM toss_billing.toss_charge('out-002', 5000, '환불', 'outage-refund')});
emu_post('/__emulator/faults', { match => { method => 'POST', pathPrefix => '/v1/payments/' }, fault => { reset => JSON::PP::true }, times => 2 });
($rc, $out, $err) = $node->psql('postgres', q{SELECT toss_billing.toss_cancel('outage-refund', '응답 없음', 1000)});
like($err, qr/TB006|outcome/i, 'a cancel with no answer is not settled');
is($node->safe_psql('postgres', q{
	SELECT c.state FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
	 WHERE p.order_id = 'outage-refund'}), 'unknown', 'it is recorded unknown');
HTTP::Tiny->new->request('DELETE', "$url/__emulator/faults");
emu_post('/__emulator/faults', { match => { pathPrefix => '/v1/' }, fault => { hang => JSON::PP::true } });
$t0 = time;
$node->safe_psql('postgres', "CALL toss_billing.run_due(time_budget => '2 seconds')");
$elapsed = time - $t0;
cmp_ok($elapsed, '<', 4, sprintf('a run replaying an unknown cancel during an outage returned after %.1f s (budget 2 s)', $elapsed));
is($node->safe_psql('postgres', q{
	SELECT c.state FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
	 WHERE p.order_id = 'outage-refund'}), 'unknown', 'the cancel is still unknown');
HTTP::Tiny->new->request('DELETE', "$url/__emulator/faults");
$node->safe_psql('postgres', 'SELECT toss_billing.resolve_unknown_now()');
$node->safe_psql('postgres', 'CALL toss_billing.run_due()');
is($node->safe_psql('postgres', q{
	SELECT c.state || ' ' || c.canceled_amount FROM toss_billing.cancels c
	  JOIN toss_billing.payments p ON p.id = c.payment_id WHERE p.order_id = 'outage-refund'}), 'done 1000',
	'once Toss is back the replay made the cancel');
my ($at_toss) = grep { $_->{orderId} eq 'outage-refund' } @{ emu_get('/__emulator/payments?orderId=outage-refund') };
is("$at_toss->{cancels} $at_toss->{balanceAmount}", '1 4000', 'Toss cancelled 1,000 KRW once');

$node->stop;
$emulator->kill_kill;
done_testing();
