# The app's side, with concurrent sessions: charge_subscription_now racing
# the runner (and itself) over the same due periods charges each period
# exactly once, as the emulator's own ledger confirms; and a successUrl
# loaded twice at once (a double redirect) gets one billing key, not TB004.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TossTest;

my ($url, $emulator) = start_emulator();
my $node = toss_node('app_flow', max_worker_processes => 24);

# ---------------------------------------------------------------- charge now, racing the runner

my $n = 30;
issue_key($node, sprintf('af-%02d', $_)) for 1 .. $n;
my $plan = $node->safe_psql('postgres', "SELECT id FROM toss_billing.create_plan('앱 월간', 9900)");
my $ids = $node->safe_psql('postgres', qq{
	SELECT string_agg(id::text, ',' ORDER BY id) FROM (
	    SELECT (toss_billing.create_subscription(format('af-%s', lpad(i::text, 2, '0')), $plan)).id
	      FROM generate_series(1, $n) i) s});
$node->safe_psql('postgres', q{
	CREATE ROLE af_app LOGIN IN ROLE toss_billing_operator;
	CREATE TABLE public.calls (caller int, subscription_id bigint, outcome text);
	GRANT INSERT ON public.calls TO af_app;
	CREATE FUNCTION public.charge_all(caller int, ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE
	    i bigint;
	    v text;
	BEGIN
	    FOREACH i IN ARRAY ids LOOP
	        BEGIN
	            SELECT status INTO v FROM toss_billing.charge_subscription_now(i);
	        EXCEPTION WHEN OTHERS THEN
	            v := SQLSTATE || ' ' || SQLERRM;
	        END;
	        INSERT INTO public.calls VALUES (caller, i, v);
	    END LOOP;
	END $$;
});
# every Toss charge takes a while, so that the callers overlap
emu_post('/__emulator/faults', { match => { method => 'POST', pathPrefix => '/v1/billing/' }, fault => { latencyMs => 100 } });

my @sessions;
my $runner = $node->background_psql('postgres', on_error_stop => 0);
$runner->query_until(qr/go/, q(\echo go
SET toss_billing.max_concurrency = 4;
CALL toss_billing.run_due();
CALL toss_billing.run_due();
\echo finished
));
push @sessions, $runner;
for my $caller (1 .. 3)
{
	# each caller goes through all the subscriptions, in an order of its own
	my @order = split /,/, $ids;
	@order = reverse @order if $caller == 2;
	@order = (@order[ $n / 2 .. $n - 1 ], @order[ 0 .. $n / 2 - 1 ]) if $caller == 3;
	my $bg = $node->background_psql('postgres', on_error_stop => 0, extra_params => [ '-U', 'af_app' ]);
	$bg->query_until(qr/go/, sprintf("\\echo go\nSELECT public.charge_all(%d, '{%s}');\n\\echo finished\n",
		$caller, join(',', @order)));
	push @sessions, $bg;
}
for my $bg (@sessions)
{
	$bg->{timeout}->start(300);
	$bg->{run}->pump until $bg->{stdout} =~ /finished/ || $bg->{timeout}->is_expired;
	unlike($bg->{stderr}, qr/ERROR/, 'a session finished without error');
	$bg->quit;
}
# whatever is left (nothing, normally) is the runner's
$node->safe_psql('postgres', 'CALL toss_billing.run_due()');

my %outcomes = map { split /\|/ } split /\n/, $node->safe_psql('postgres', q{
	SELECT regexp_replace(outcome, '^(TB006) the open period of subscription [0-9]+ is being charged$', '\1 being charged'),
	       count(*) FROM public.calls GROUP BY 1});
note(join(', ', map { "$_: $outcomes{$_}" } sort keys %outcomes));
is(scalar(grep { $_ ne 'DONE' && $_ ne 'TB006 being charged' } keys %outcomes), 0,
	'every call returned the Payment or "being charged"');
is($node->safe_psql('postgres', 'SELECT count(*) FROM public.calls'), 3 * $n, 'every call returned');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM toss_billing.payments WHERE state = 'done' AND period_number = 0}),
	$n, 'the ledger has one paid first period per subscription');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT obligation FROM toss_billing.payments WHERE state = 'done'
	                       GROUP BY 1 HAVING count(*) > 1) d}), '0', 'no period is paid twice in the ledger');
is($node->safe_psql('postgres', q{SELECT count(*) FROM toss_billing.attempts WHERE state <> 'done'}),
	'0', 'no attempt failed or is left open');
is($node->safe_psql('postgres', 'SELECT string_agg(DISTINCT period_number::text, \',\') FROM toss_billing.subscriptions'),
	'1', 'every subscription moved on to its next period');
my $by = $node->safe_psql('postgres', q{
	SELECT string_agg(x, ', ') FROM (SELECT a.requested_by || '=' || count(*) AS x FROM toss_billing.attempts a
	                                  GROUP BY a.requested_by ORDER BY 1) y});
note("attempts by: $by");
my $ledger = emu_get('/__emulator/ledger');
is($ledger->{totalDone}, $n, 'the emulator made exactly one charge per subscription');
is(scalar @{ $ledger->{duplicateOrderIds} }, 0, 'the emulator saw no order charged twice');
# a second call afterwards: the payment already made, nothing posted
my $before = emu_get('/__emulator/ledger')->{totalDone};
my $first = (split /,/, $ids)[0];
is($node->safe_psql('postgres', "SELECT status FROM toss_billing.charge_subscription_now($first)",
	extra_params => [ '-U', 'af_app' ]), 'DONE', 'the success page loaded again shows the payment');
is(emu_get('/__emulator/ledger')->{totalDone}, $before, 'and charges nothing');
$node->safe_psql('postgres', 'DELETE FROM public.calls');

# ---------------------------------------------------------------- the double redirect

$node->safe_psql('postgres', "SELECT toss_billing.create_customer(NULL, NULL, 'af-twice')");
my $ak = authkey('af-twice');
emu_post('/__emulator/faults', { match => { method => 'POST', pathPrefix => '/v1/billing/authorizations/' },
		fault => { latencyMs => 300 } });
my @loads;
for (1 .. 2)
{
	my $bg = $node->background_psql('postgres', on_error_stop => 0, extra_params => [ '-U', 'af_app' ]);
	$bg->query_until(qr/go/, "\\echo go\nSELECT id || ' ' || status FROM toss_billing.toss_issue_billing_key('af-twice', '$ak');\n\\echo finished\n");
	push @loads, $bg;
}
my @keys;
for my $bg (@loads)
{
	$bg->{timeout}->start(60);
	$bg->{run}->pump until $bg->{stdout} =~ /finished/ || $bg->{timeout}->is_expired;
	unlike($bg->{stderr}, qr/ERROR/, 'a load of the successUrl got no error');
	push @keys, $1 if $bg->{stdout} =~ /^(\d+ \w+)$/m;
	$bg->quit;
}
is(scalar @keys, 2, 'both loads returned a key');
is($keys[0], $keys[1], 'the same key');
like($keys[0], qr/ active$/, 'and it is active');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM toss_billing.billing_key_info WHERE customer_key = 'af-twice' AND status = 'active'}),
	'1', 'the customer has one active key');
is($node->safe_psql('postgres', q{
	SELECT string_agg(status, ',' ORDER BY status) FROM toss_billing.billing_key_info WHERE customer_key = 'af-twice'}),
	'active,failed', 'the load Toss refused recorded its refusal, and returned the key the other load got');

$node->stop;
$emulator->kill_kill;
done_testing();
