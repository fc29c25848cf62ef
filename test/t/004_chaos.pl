# Chaos: due subscriptions charged while the emulator injects faults into
# about 10% of charges (resets, hangs past the timeout, 5xx, charges whose
# answer is lost) and the runner is crashed again and again (kill -9 of the
# backend running it, immediate stops of the whole server).  After restart,
# recovery and reconciliation: no period charged twice at Toss, no Toss
# charge missing from the ledger, every subscription paid or in dunning with
# a recorded reason.
#
# Size: CHAOS_SUBSCRIPTIONS (default 200 in make test; 1000 on demand),
# CHAOS_CRASHES (default 20).  Bounded in time.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use TossTest;

my $subscriptions = $ENV{CHAOS_SUBSCRIPTIONS} // 200;
my $crashes_wanted = $ENV{CHAOS_CRASHES} // 20;
my $customers = 40;
srand($ENV{CHAOS_SEED} // 20261129);

my ($url, $emulator) = start_emulator();
my $node = toss_node('chaos',
	'toss_billing.timeout' => "'2s'",
	'toss_billing.connect_timeout' => "'1s'",
	'toss_billing.max_concurrency' => 4,
	restart_after_crash => 'on');
issue_key($node, sprintf('ch-%03d', $_)) for 1 .. $customers;
my $plan = $node->safe_psql('postgres', "SELECT id FROM toss_billing.create_plan('카오스 구독', 9900)");
$node->safe_psql('postgres', qq{
	SELECT toss_billing.freeze_clock('2026-03-31 09:00+09');
	SELECT count(toss_billing.create_subscription(
	           'ch-' || lpad((1 + i % $customers)::text, 3, '0'), $plan))
	  FROM generate_series(1, $subscriptions) i;
	SELECT toss_billing.advance_clock('1 month');
});

# about 10% of charge requests hit one of four faults
my @kinds = ({ reset => JSON::PP::true }, { hang => JSON::PP::true },
	{ code => 'FAILED_INTERNAL_SYSTEM_PROCESSING' }, { lostResponse => JSON::PP::true });
emu_post('/__emulator/faults', { match => { method => 'POST', pathPrefix => '/v1/billing/' },
	fault => { %$_, latencyMs => 5 }, rate => 0.026 }) for @kinds;
emu_post('/__emulator/faults', { match => { method => 'POST', pathPrefix => '/v1/billing/' },
	fault => { latencyMs => 50 } });

sub work_left
{
	return $node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM toss_billing.subscriptions
		         WHERE next_charge_at <= toss_billing.now() AND status IN ('active', 'past_due'))
		     + (SELECT count(*) FROM toss_billing.payments WHERE state IN ('in_flight', 'unknown'))});
}

# crash loop: until enough crashes AND the work is done, under the faults
my ($kills, $stops) = (0, 0);
my $deadline = time + 240;
while (($kills + $stops < $crashes_wanted || work_left() > 0) && time < $deadline)
{
	$node->safe_psql('postgres', 'SELECT toss_billing.resolve_unknown_now()')
	  if $kills + $stops >= $crashes_wanted;
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $bg->query_safe('SELECT pg_backend_pid()');
	$bg->query_until(qr/go/, "\\echo go\nCALL toss_billing.run_due(time_budget => '30 seconds');\n");
	sleep(0.2 + rand(1.0));
	if (rand() < 0.6)
	{
		kill 'KILL', $pid;
		$kills++;
		eval { $bg->quit };
		$node->poll_query_until('postgres', 'SELECT true') or die 'server did not come back';
	}
	else
	{
		$node->stop('immediate');
		eval { $bg->quit };
		$node->start;
		$stops++;
	}
	# a month passes every fifth crash: more periods fall due while crashing
	if (($kills + $stops) % 5 == 0 && $kills + $stops < $crashes_wanted)
	{
		$node->safe_psql('postgres', "SELECT toss_billing.advance_clock('1 month')");
	}
}
my $crashes = $kills + $stops;
note("crashes: $kills kill -9 of the runner, $stops immediate stops");

# faults off; recover until nothing is left to do (bounded)
my $faults = 0;
$faults += $_->{hits} // 0 for grep { $_->{rate} } @{ emu_get('/__emulator/faults') };
my $requests = emu_get('/__emulator/stats')->{requests};
note(sprintf('%d faults in %d Toss API requests (%.1f%%)', $faults, $requests,
	100 * $faults / ($requests || 1)));
HTTP::Tiny->new->request('DELETE', "$url/__emulator/faults");
# transient failures retry after the dunning policy's short delay, and the
# operator, knowing Toss is healthy again, lifts the lookups' backoff
$node->safe_psql('postgres', "SELECT toss_billing.advance_clock('1 hour')");
$node->safe_psql('postgres', 'SELECT toss_billing.resolve_unknown_now()');
my $open;
for my $round (1 .. 30)
{
	$node->safe_psql('postgres', "CALL toss_billing.run_due(time_budget => '60 seconds')");
	$open = $node->safe_psql('postgres', q{
		SELECT count(*) FROM toss_billing.payments WHERE state IN ('pending', 'in_flight', 'unknown')});
	my $due = $node->safe_psql('postgres', q{
		SELECT count(*) FROM toss_billing.subscriptions
		 WHERE next_charge_at <= toss_billing.now() AND status IN ('active', 'past_due')});
	last if $open == 0 && $due == 0;
	sleep 1;
}
is($open, 0, 'recovery leaves no attempt in_flight or unknown');
my $rec = $node->safe_psql('postgres', q{
	SELECT recovered FROM toss_billing.reconcile(now() - interval '1 day', now() + interval '1 day')});
note("reconcile recovered $rec payments");

# what Toss (the emulator) charged, against the ledger
my $ledger = emu_get('/__emulator/ledger');
my %per_period;
for my $order (keys %{ $ledger->{doneByOrderId} })
{
	my ($sub, $period) = $order =~ /^sub(\d+)-p(\d+)-a\d+-/ or next;
	$per_period{"$sub/$period"} += $ledger->{doneByOrderId}{$order};
}
my $duplicates = grep { $_ > 1 } values %per_period;
$duplicates += scalar @{ $ledger->{duplicateOrderIds} };
is($duplicates, 0, 'no subscription period was charged twice at Toss');

my %done = map { $_ => 1 } split /\n/, $node->safe_psql('postgres',
	"SELECT order_id FROM toss_billing.payments WHERE state = 'done'");
my $missing = grep { !$done{$_} } keys %{ $ledger->{doneByOrderId} };
is($missing, 0, 'every charge Toss made is a done row in the ledger');
my $extra = grep { !exists $ledger->{doneByOrderId}{$_} } keys %done;
is($extra, 0, 'every done row in the ledger is a charge Toss made');

my $charges = $ledger->{totalDone};
my $unexplained = $node->safe_psql('postgres', qq{
	SELECT count(*) FROM toss_billing.subscriptions s
	 WHERE NOT (s.status = 'active' AND s.next_charge_at > toss_billing.now())
	   AND NOT (s.status IN ('past_due', 'unpaid', 'canceled')
	            AND EXISTS (SELECT FROM toss_billing.events e
	                         WHERE e.subscription_id = s.id AND e.to_status = s.status
	                           AND e.reason IS NOT NULL))});
is($unexplained, 0, 'every subscription is paid for its due periods or in dunning with a reason')
  or diag($node->safe_psql('postgres', qq{
	SELECT s.id, s.status, s.period_number, s.next_charge_at, toss_billing.now(),
	       (SELECT string_agg(p.state || ':' || coalesce(p.failure_code, ''), ',' ORDER BY p.id)
	          FROM toss_billing.payments p WHERE p.subscription_id = s.id AND p.period_number >= s.period_number - 1)
	  FROM toss_billing.subscriptions s
	 WHERE NOT (s.status = 'active' AND s.next_charge_at > toss_billing.now()) LIMIT 5}));
my $paid_periods = $node->safe_psql('postgres',
	"SELECT count(*) FROM toss_billing.payments WHERE state = 'done' AND subscription_id IS NOT NULL");
cmp_ok($paid_periods, '>=', 3 * $subscriptions, "$paid_periods subscription periods paid, at least 3 each");
cmp_ok($crashes, '>=', $crashes_wanted, "crashed $crashes times");
cmp_ok($faults, '>', 0, "the emulator injected $faults faults");

$node->stop;
$emulator->kill_kill;
done_testing();
diag("CHAOS subscriptions=$subscriptions crashes=$crashes faults=$faults requests=$requests charges=$charges duplicates=$duplicates missing=$missing");
