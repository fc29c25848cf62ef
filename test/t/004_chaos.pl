# Chaos: due subscriptions charged while the emulator is hostile and the
# runner is crashed again and again, under both behaviours Toss might have
# for a failed orderId (taken again, or refused with DUPLICATED_ORDER_ID).
#
# The emulator injects, into about a fifth of the charges: resets, hangs
# past the timeout, 5xx, charges whose answer is lost (some of them invisible
# to the lookups for a while: lookup lag), ghost charges (made, then answered
# with an error), DONE answers that do not match the request (another
# amount, another order's payment, missing fields, another currency) and
# answers with mistyped fields; and into some lookups, mismatched answers.
# A few customers' cards decline until they are replaced mid-run.  The
# runner is killed (kill -9 of its backend) or the server stopped
# (immediate) about CHAOS_CRASHES times.  After the faults stop: recovery,
# reconciliation, and the proof, against the emulator's own ledger:
#   duplicates    obligations (subscription periods) with more than one approved charge at Toss
#   missing       approved charges at Toss that are not a paid order of the ledger
#   wrongly_paid  paid orders of the ledger without a matching approved charge at Toss
#   stuck         attempts or orders still in flight or unknown
# all zero, and every subscription paid for its due periods or in dunning
# with a recorded reason.
#
# Size: CHAOS_SUBSCRIPTIONS per mode (default 100 in make test; 1000 on
# demand), CHAOS_CRASHES per mode (default 12), CHAOS_MODES (default
# "reuse,refuse").  Bounded in time.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use TossTest;

my $subscriptions = $ENV{CHAOS_SUBSCRIPTIONS} // 100;
my $crashes_wanted = $ENV{CHAOS_CRASHES} // 12;
my @modes = split /,/, ($ENV{CHAOS_MODES} // 'reuse,refuse');
my $customers = 40;
my @declining = (37 .. 40);    # cards that decline until replaced
srand($ENV{CHAOS_SEED} // 20261201);

my %total;
for my $mode (@modes)
{
	my %r = chaos($mode);
	$total{$_} += $r{$_} for keys %r;
}
done_testing();
diag(sprintf('CHAOS subscriptions=%d crashes=%d faults=%d ghosts=%d lagged=%d mismatched=%d mistyped=%d '
	  . 'generations=%d requests=%d charges=%d duplicates=%d missing=%d wrongly_paid=%d stuck=%d',
	map { $total{$_} // 0 } qw(subscriptions crashes faults ghosts lagged mismatched mistyped
	  generations requests charges duplicates missing wrongly_paid stuck)));

sub chaos
{
	my ($mode) = @_;
	my ($url, $emulator) = start_emulator('--aborted-order-id-reuse', $mode eq 'reuse' ? 'on' : 'off',
		'--seed', int(rand(1_000_000)));
	my $node = toss_node("chaos_$mode",
		'toss_billing.timeout' => "'2s'",
		'toss_billing.connect_timeout' => "'1s'",
		'toss_billing.max_concurrency' => 4,
		restart_after_crash => 'on');
	for my $i (1 .. $customers)
	{
		issue_key($node, sprintf('ch-%03d', $i),
			(grep { $_ == $i } @declining) ? (cardNumber => '4111111111110002') : ());
	}
	my $plan = $node->safe_psql('postgres', "SELECT id FROM toss_billing.create_plan('카오스 구독', 9900)");
	$node->safe_psql('postgres', qq{
		SELECT toss_billing.freeze_clock('2026-03-31 09:00+09');
		SELECT count(toss_billing.create_subscription(
		           'ch-' || lpad((1 + i % $customers)::text, 3, '0'), $plan))
		  FROM generate_series(1, $subscriptions) i;
		SELECT toss_billing.advance_clock('1 month');
	});

	# the faults: on charges (POST /v1/billing/...), each a small random share
	my $post = { method => 'POST', pathPrefix => '/v1/billing/' };
	my $lookup = { method => 'GET', pathPrefix => '/v1/payments/orders/' };
	my @faults = (
		[ plain => $post, { reset => JSON::PP::true }, 0.02 ],
		[ plain => $post, { hang => JSON::PP::true }, 0.015 ],
		[ plain => $post, { code => 'FAILED_INTERNAL_SYSTEM_PROCESSING' }, 0.02 ],
		[ plain => $post, { lostResponse => JSON::PP::true }, 0.02 ],
		[ lagged => $post, { lostResponse => JSON::PP::true, lookupLagMs => 2500 }, 0.02 ],
		[ ghosts => $post, { ghost => JSON::PP::true, code => 'PROVIDER_ERROR' }, 0.015 ],
		[ ghosts => $post, { ghost => JSON::PP::true, code => 'FAILED_INTERNAL_SYSTEM_PROCESSING' }, 0.01 ],
		[ mismatched => $post, { mismatch => 'totalAmount' }, 0.01 ],
		[ mismatched => $post, { mismatch => 'otherOrder' }, 0.01 ],
		[ mismatched => $post, { mismatch => 'minimal' }, 0.005 ],
		[ mismatched => $post, { mismatch => 'currency' }, 0.005 ],
		[ mistyped => $post, { mismatch => 'totalAmountString' }, 0.005 ],
		[ mistyped => $post, { mismatch => 'approvedAtNumber' }, 0.005 ],
		[ mistyped => $post, { mismatch => 'statusNumber' }, 0.005 ],
		[ mismatched => $lookup, { mismatch => 'orderId' }, 0.05 ],
		[ lagged => $lookup, { latencyMs => 2500 }, 0.02 ],
	);
	my %kind_of;
	for my $f (@faults)
	{
		my ($kind, $match, $fault, $rate) = @$f;
		my $r = emu_post('/__emulator/faults', { match => $match, fault => { %$fault, latencyMs => 5 }, rate => $rate });
		$kind_of{ $r->{id} } = $kind;
	}
	emu_post('/__emulator/faults', { match => $post, fault => { latencyMs => 50 } });

	my $work_left = sub {
		return $node->safe_psql('postgres', q{
			SELECT (SELECT count(*) FROM toss_billing.subscriptions
			         WHERE next_charge_at <= toss_billing.now() AND status IN ('active', 'past_due'))
			     + (SELECT count(*) FROM toss_billing.attempts WHERE state IN ('in_flight', 'unknown'))});
	};

	# crash loop: until enough crashes AND the work is done, under the faults
	my ($kills, $stops, $replaced) = (0, 0, 0);
	my $deadline = time + 200;
	# the declining customers' cards are replaced once each has been declined
	# (whatever the machine's speed: a slow run may reach them late) by its
	# card, REJECT_CARD_PAYMENT: that order is ABORTED at Toss.  A failure
	# injected by a fault does not count: Toss may never have seen that
	# order id, so the retry after the new card would be taken in place and
	# the refuse mode would have no refused order id to replace.
	my $declined = sub {
		return $node->safe_psql('postgres', sprintf(q{
			SELECT count(DISTINCT c.id) FROM toss_billing.customers c
			  JOIN toss_billing.attempts a ON a.customer_id = c.id
			 WHERE c.customer_key IN (%s) AND a.state = 'failed' AND a.failure_code = 'REJECT_CARD_PAYMENT'},
			join(', ', map { sprintf("'ch-%03d'", $_) } @declining)));
	};
	while (($kills + $stops < $crashes_wanted || !$replaced || $work_left->() > 0) && time < $deadline)
	{
		if ($kills + $stops >= $crashes_wanted)
		{
			$node->safe_psql('postgres', 'SELECT toss_billing.resolve_unknown_now()');
			note("$mode: left " . $node->safe_psql('postgres', q{
				SELECT string_agg(x, ' ') FROM (
				  SELECT 'due:' || s.status || '=' || count(*) AS x FROM toss_billing.subscriptions s
				   WHERE next_charge_at <= toss_billing.now() AND status IN ('active', 'past_due') GROUP BY s.status
				  UNION ALL
				  SELECT 'attempt:' || a.state || CASE WHEN p.hold_reason IS NOT NULL THEN '/held' ELSE '' END || '=' || count(*)
				    FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
				   WHERE a.state IN ('in_flight', 'unknown') GROUP BY a.state, p.hold_reason IS NOT NULL) y}))
			  if ($kills + $stops) % 10 == 0;
		}
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
		my $crashes = $kills + $stops;
		# a month passes every fourth crash: more periods fall due while crashing
		$node->safe_psql('postgres', "SELECT toss_billing.advance_clock('1 month')")
		  if $crashes % 4 == 0 && $crashes < $crashes_wanted;
		# half-way, the declining customers get cards that work: their open
		# periods are retried under the order ids Toss saw declined
		if (!$replaced && $crashes >= $crashes_wanted / 2 && $declined->() == scalar @declining)
		{
			for my $i (@declining)
			{
				my $c = sprintf('ch-%03d', $i);
				# the charges' faults match the issuance's path too (POST
				# /v1/billing/authorizations/issue): a ghost PROVIDER_ERROR
				# there is a definitive refusal the issuance rightly does not
				# retry; the customer registers the card again, with a new
				# authKey
				my ($issued, $why) = (0, '');
				for my $try (1 .. 5)
				{
					my $ak = authkey($c, cardNumber => '4906251234123456');
					my ($rc, $out, $err) = $node->psql('postgres',
						"SELECT status FROM toss_billing.toss_issue_billing_key('$c', '$ak')");
					if ($rc == 0 && $out eq 'active')
					{
						$issued = 1;
						last;
					}
					$why = $err;
					note("$mode: the new card of $c was not registered ($err); registering it again");
				}
				die "$mode: the new card of $c could not be registered: $why" unless $issued;
				$node->safe_psql('postgres', "SELECT toss_billing.card_replaced('$c')");
			}
			$replaced = 1;
			note("$mode: the declining cards replaced after $crashes crashes");
		}
	}
	my $crashes = $kills + $stops;
	note("$mode: $kills kill -9 of the runner, $stops immediate stops");

	# the faults' figures, then no more faults
	my %hits;
	for my $f (@{ emu_get('/__emulator/faults') })
	{
		my $kind = $kind_of{ $f->{id} } or next;
		$hits{$kind} += $f->{hits} // 0;
		$hits{faults} += $f->{hits} // 0;
	}
	my $requests = emu_get('/__emulator/stats')->{requests};
	note(sprintf('%s: %d faults in %d Toss API requests (%.1f%%)', $mode, $hits{faults} // 0, $requests,
		100 * ($hits{faults} // 0) / ($requests || 1)));
	HTTP::Tiny->new->request('DELETE', "$url/__emulator/faults");

	# recovery: transient failures retry after the short delays, the lookups'
	# backoff is lifted (Toss is healthy again), until nothing is left (bounded)
	my $open;
	for my $round (1 .. 30)
	{
		$node->safe_psql('postgres', "SELECT toss_billing.advance_clock('1 hour')") if $round <= 3;
		$node->safe_psql('postgres', 'SELECT toss_billing.resolve_unknown_now()');
		$node->safe_psql('postgres', "CALL toss_billing.run_due(time_budget => '60 seconds')");
		$open = $node->safe_psql('postgres', q{
			SELECT (SELECT count(*) FROM toss_billing.payments WHERE state IN ('in_flight', 'unknown'))
			     + (SELECT count(*) FROM toss_billing.attempts WHERE state IN ('in_flight', 'unknown'))});
		my $due = $node->safe_psql('postgres', q{
			SELECT count(*) FROM toss_billing.subscriptions
			 WHERE next_charge_at <= toss_billing.now() AND status IN ('active', 'past_due')});
		last if $open == 0 && $due == 0;
		sleep 1;
	}
	my $rec = $node->safe_psql('postgres', q{
		SELECT recovered FROM toss_billing.reconcile(now() - interval '1 day', now() + interval '1 day')});
	note("$mode: reconcile recovered $rec payments");
	# stuck: attempts or orders not settled, or periods due that nothing charges
	my $stuck = $node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM toss_billing.payments WHERE state IN ('in_flight', 'unknown'))
		     + (SELECT count(*) FROM toss_billing.attempts WHERE state IN ('in_flight', 'unknown'))
		     + (SELECT count(*) FROM toss_billing.subscriptions
		         WHERE next_charge_at <= toss_billing.now() AND status IN ('active', 'past_due'))});
	is($stuck, 0, "$mode: nothing left in flight, unknown or due after recovery and reconcile")
	  or diag($node->safe_psql('postgres', q{
		SELECT string_agg(format('%s %s %s %s', p.order_id, p.state, p.hold_reason, p.failure_code), E'\n')
		  FROM toss_billing.payments p
		 WHERE p.state IN ('in_flight', 'unknown') OR (p.state = 'pending' AND p.hold_reason IS NOT NULL)}));

	# what Toss (the emulator) charged, against the ledger
	my $ledger = emu_get('/__emulator/ledger');
	my $charges_by_order = $ledger->{chargesByOrderId};
	my (%per_obligation, %at_toss);
	for my $order (keys %$charges_by_order)
	{
		for my $c (@{ $charges_by_order->{$order} })
		{
			$at_toss{"$order/$c->{paymentKey}"} = $c;
			my ($sub, $period) = $order =~ /^sub(\d+)-p(\d+)-a\d+-/ or next;
			$per_obligation{"$sub/$period"}++;
		}
	}
	my $duplicates = grep { $_ > 1 } values %per_obligation;
	$duplicates += scalar @{ $ledger->{duplicateOrderIds} };
	is($duplicates, 0, "$mode: no obligation has more than one approved charge at Toss");

	my %paid;
	for my $row (split /\n/, $node->safe_psql('postgres', q{
		SELECT order_id || '/' || payment_key || '|' || amount || '|' || coalesce(total_amount, -1)
		  FROM toss_billing.payments WHERE state = 'done'}))
	{
		my ($key, $amount, $total) = split /\|/, $row;
		$paid{$key} = [ $amount, $total ];
	}
	my @missing = grep { !$paid{$_} } keys %at_toss;
	is(scalar @missing, 0, "$mode: every approved charge at Toss is a paid order of the ledger")
	  or diag("missing: @missing[0 .. ($#missing < 4 ? $#missing : 4)]");
	my @wrong = grep {
		my $c = $at_toss{$_};
		!$c || $c->{amount} != $paid{$_}[0] || $paid{$_}[1] != $paid{$_}[0]
	} keys %paid;
	is(scalar @wrong, 0, "$mode: every paid order is an approved charge at Toss of its amount")
	  or diag("wrongly paid: @wrong[0 .. ($#wrong < 4 ? $#wrong : 4)]");

	my $unexplained = $node->safe_psql('postgres', qq{
		SELECT count(*) FROM toss_billing.subscriptions s
		 WHERE NOT (s.status = 'active' AND s.next_charge_at > toss_billing.now())
		   AND NOT (s.status IN ('past_due', 'unpaid', 'canceled')
		            AND EXISTS (SELECT FROM toss_billing.events e
		                         WHERE e.subscription_id = s.id AND e.to_status = s.status
		                           AND e.reason IS NOT NULL))});
	is($unexplained, 0, "$mode: every subscription is paid for its due periods or in dunning with a reason")
	  or diag($node->safe_psql('postgres', qq{
		SELECT s.id, s.status, s.period_number, s.next_charge_at, toss_billing.now(),
		       (SELECT string_agg(p.state || ':' || coalesce(p.failure_code, ''), ',' ORDER BY p.id)
		          FROM toss_billing.payments p WHERE p.subscription_id = s.id AND p.period_number >= s.period_number - 1)
		  FROM toss_billing.subscriptions s
		 WHERE NOT (s.status = 'active' AND s.next_charge_at > toss_billing.now()) LIMIT 5}));
	my $paid_periods = $node->safe_psql('postgres',
		"SELECT count(*) FROM toss_billing.payments WHERE state = 'done' AND subscription_id IS NOT NULL");
	cmp_ok($paid_periods, '>=', 3 * $subscriptions, "$mode: $paid_periods subscription periods paid, at least 3 each");
	ok($replaced, "$mode: the declining customers were declined, then got cards that work");
	my $generations = $node->safe_psql('postgres',
		'SELECT count(*) FROM toss_billing.payments WHERE generation > 1');
	if ($mode eq 'refuse')
	{
		cmp_ok($generations, '>', 0, "$mode: refused ABORTED order ids were replaced by $generations new orders");
	}
	else
	{
		is($generations, 0, "$mode: ABORTED order ids were charged again in place");
	}
	my $held = $node->safe_psql('postgres', q{
		SELECT count(*) FROM toss_billing.discrepancies WHERE kind = 'unverified_answer'});
	cmp_ok($held, '>', 0, "$mode: $held unverified answers were held and recorded");
	cmp_ok($crashes, '>=', $crashes_wanted, "$mode: crashed $crashes times");
	cmp_ok($hits{$_} // 0, '>', 0, "$mode: the emulator injected " . ($hits{$_} // 0) . " $_ faults")
	  for qw(ghosts lagged mismatched mistyped);

	$node->stop;
	$emulator->kill_kill;
	return (subscriptions => $subscriptions, crashes => $crashes, faults => $hits{faults} // 0,
		ghosts => $hits{ghosts} // 0, lagged => $hits{lagged} // 0, mismatched => $hits{mismatched} // 0,
		mistyped => $hits{mistyped} // 0, generations => $generations, requests => $requests,
		charges => $ledger->{totalDone}, duplicates => $duplicates, missing => scalar @missing,
		wrongly_paid => scalar @wrong, stuck => $stuck);
}
