# charge_invoice_now racing the runner (and itself): several app sessions
# call it for every invoice at once while run_due runs, over invoices of
# their own (one-off items due now), period invoices (charged as their
# subscription's period) and next periods' drafts (their one-off lines split
# off and charged).  Each invoice is charged exactly once at the emulator,
# for exactly its amount_due, and the ledger equals the emulator's.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TossTest;

my ($url, $emulator) = start_emulator();
my $node = toss_node('invoice_now', max_worker_processes => 24);

my $own = 16;       # subscriptions with a one-off invoice due now (the first $drafts of them also a draft)
my $drafts = 6;     # ... whose next period's draft holds a one-off line
my $periods = 8;    # subscriptions whose period invoice is open and due

issue_key($node, sprintf('in-%02d', $_)) for 1 .. $own + $periods;
my $plan = $node->safe_psql('postgres', "SELECT id FROM toss_billing.create_plan('인보이스 월간', 9900)");
# the first group's first periods, paid by the runner
$node->safe_psql('postgres', qq{
	SELECT count(toss_billing.create_subscription(format('in-%s', lpad(i::text, 2, '0')), $plan))
	  FROM generate_series(1, $own) i});
$node->safe_psql('postgres', 'CALL toss_billing.run_due()');
is($node->safe_psql('postgres', "SELECT count(*) FROM toss_billing.payments WHERE state = 'done'"),
	$own, 'the first periods are paid');

# invoices of their own, due now: a one-off item of each subscription, made
# due now for the runner (_invoice_due_now: the finalise-only half)
my $own_ids = $node->safe_psql('postgres', q{
	SELECT string_agg(id::text, ',' ORDER BY id) FROM (
	    SELECT (toss_billing._invoice_due_now((toss_billing.add_invoice_item(s.id, 1000 + s.id, '추가 항목')).invoice_id)).id
	      FROM toss_billing.subscriptions s ORDER BY s.id) x});
# drafts: another one-off line on the next period's draft of the first ones
my $draft_ids = $node->safe_psql('postgres', qq{
	SELECT string_agg(invoice_id::text, ',' ORDER BY invoice_id) FROM (
	    SELECT (toss_billing.add_invoice_item(s.id, 2500, '추가 작업')).invoice_id
	      FROM (SELECT id FROM toss_billing.subscriptions ORDER BY id LIMIT $drafts) s) x});
# period invoices: the second group's first periods, finalised (open, due)
$node->safe_psql('postgres', qq{
	SELECT count(toss_billing.create_subscription(format('in-%s', lpad(i::text, 2, '0')), $plan))
	  FROM generate_series($own + 1, $own + $periods) i;
	SELECT toss_billing._finalize_due(1000)});
my $period_ids = $node->safe_psql('postgres', q{
	SELECT string_agg(i.id::text, ',' ORDER BY i.id) FROM toss_billing.invoices i
	 WHERE i.kind = 'period' AND i.status = 'open'});
is(scalar(split /,/, $own_ids), $own, 'the invoices of their own are open and due');
is(scalar(split /,/, $period_ids), $periods, 'the period invoices are open');
is(scalar(split /,/, $draft_ids), $drafts, 'the drafts hold one-off lines');
my @targets = (split(/,/, $own_ids), split(/,/, $period_ids), split(/,/, $draft_ids));

$node->safe_psql('postgres', q{
	CREATE ROLE in_app LOGIN IN ROLE toss_billing_operator;
	CREATE TABLE public.calls (caller int, invoice_id bigint, outcome text);
	GRANT INSERT ON public.calls TO in_app;
	CREATE FUNCTION public.charge_all(caller int, ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE
	    i bigint;
	    v text;
	BEGIN
	    FOREACH i IN ARRAY ids LOOP
	        BEGIN
	            SELECT status INTO v FROM toss_billing.charge_invoice_now(i);
	        EXCEPTION WHEN OTHERS THEN
	            v := SQLSTATE || ' ' || SQLERRM;
	        END;
	        INSERT INTO public.calls VALUES (caller, i, v);
	    END LOOP;
	END $$;
});
# every Toss charge takes a while, so that the callers and the runner overlap
emu_post('/__emulator/faults', { match => { method => 'POST', pathPrefix => '/v1/billing/' }, fault => { latencyMs => 100 } });
my $before = emu_get('/__emulator/ledger')->{totalDone};

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
	# each caller goes through all the invoices, in an order of its own
	my @order = @targets;
	@order = reverse @order if $caller == 2;
	@order = (@order[ @order / 2 .. $#order ], @order[ 0 .. @order / 2 - 1 ]) if $caller == 3;
	my $bg = $node->background_psql('postgres', on_error_stop => 0, extra_params => [ '-U', 'in_app' ]);
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
	SELECT regexp_replace(outcome, 'invoice [0-9]+', 'invoice N'), count(*) FROM public.calls GROUP BY 1});
note(join(', ', map { "$_: $outcomes{$_}" } sort keys %outcomes));
my %allowed = map { $_ => 1 } ('DONE', 'TB006 invoice N is being charged', '55000 invoice N is paid',
	'55000 invoice N has nothing to charge now');
is(scalar(grep { !$allowed{$_} } keys %outcomes), 0,
	'every call returned the Payment, "being charged", "paid", or (a draft split already) "nothing to charge now"')
  or diag(join("\n", grep { !$allowed{$_} } keys %outcomes));
is($node->safe_psql('postgres', 'SELECT count(*) FROM public.calls'), 3 * @targets, 'every call returned');
cmp_ok($outcomes{DONE} // 0, '>', 0, 'the callers charged some invoices themselves');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM public.calls WHERE outcome = 'DONE' AND invoice_id = ANY (SELECT unnest(string_to_array($$} . $draft_ids . q{$$, ',')::bigint[]))}),
	$drafts, 'each draft was split and charged by exactly one call');

# the ledger
is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM toss_billing.invoices WHERE id IN ($own_ids, $period_ids) AND status = 'paid'}),
	$own + $periods, 'every invoice is paid');
is($node->safe_psql('postgres', qq{
	SELECT count(*) || ' ' || count(*) FILTER (WHERE status = 'paid' AND amount_due = 2500)
	  FROM toss_billing.invoices i
	 WHERE i.kind = 'one_off' AND i.id NOT IN ($own_ids)}),
	"$drafts $drafts", "one invoice of its own split off each draft, paid");
is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM toss_billing.invoice_items WHERE invoice_id IN ($draft_ids) AND kind = 'one_off'}),
	'0', 'the drafts kept none of their one-off lines');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT obligation FROM toss_billing.payments WHERE state = 'done'
	                       GROUP BY 1 HAVING count(*) > 1) d}), '0', 'no obligation is paid twice in the ledger');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT invoice_id FROM toss_billing.payments WHERE state = 'done'
	                       GROUP BY 1 HAVING count(*) > 1) d}), '0', 'no invoice is paid by two orders');
is($node->safe_psql('postgres', q{SELECT count(*) FROM toss_billing.attempts WHERE state <> 'done'}),
	'0', 'no attempt failed or is left open');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM toss_billing.invoices i
	  JOIN toss_billing.payments p ON p.invoice_id = i.id AND p.state = 'done'
	 WHERE i.amount_paid <> i.amount_due OR p.amount <> i.amount_due}),
	'0', 'every invoice was paid exactly its amount_due');
my $by = $node->safe_psql('postgres', q{
	SELECT string_agg(x, ', ') FROM (SELECT a.requested_by || '=' || count(*) AS x FROM toss_billing.attempts a
	                                  GROUP BY a.requested_by ORDER BY 1) y});
note("attempts by: $by");

# the emulator's own ledger against ours
my $ledger = emu_get('/__emulator/ledger');
my $charges = $own + $periods + $drafts;
is($ledger->{totalDone} - $before, $charges, "the emulator made exactly one charge per invoice ($charges)");
is(scalar @{ $ledger->{duplicateOrderIds} }, 0, 'the emulator saw no order charged twice');
my @ours = split /\n/, $node->safe_psql('postgres', q{
	SELECT p.order_id || ' ' || p.amount FROM toss_billing.payments p WHERE p.state = 'done' ORDER BY p.id});
is(scalar @ours, $ledger->{totalDone}, 'the ledger has every charge the emulator made');
is(scalar(grep { my ($o, $a) = split / /; ($ledger->{amountByOrderId}{$o} // -1) != $a } @ours), 0,
	'each of them for the amount the emulator charged');

$node->stop;
$emulator->kill_kill;
done_testing();
