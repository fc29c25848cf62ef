# Invoices under concurrency (issue 14).
#
# Usage: several sessions (pgbench clients, one commit per record_usage
# call) record usage at random times -- in the open window, and in windows
# already finalised (late usage) -- while the runner's claim finalises the
# period invoices again and again as the clock moves on.  Afterwards every
# record is billed by exactly one invoice, and the invoices' usage lines add
# up to exactly the usage recorded, subscription by subscription: nothing
# counted twice, nothing lost.
#
# Coupons: sessions race to redeem a coupon limited to a few redemptions,
# and several sessions redeem the same coupon for the same subscription at
# once: the limit holds, and every redemption is counted once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use TossTest;

my ($url, $emulator) = start_emulator();
my $node = toss_node('invoices_concurrency');
my $subscriptions = 20;
my $months = 4;

$node->safe_psql('postgres', qq{
	SELECT toss_billing.freeze_clock('2026-01-01 00:00+09');
	SELECT count(toss_billing.create_customer(NULL, NULL, 'cc-' || i)) FROM generate_series(1, $subscriptions) i;
	SELECT id FROM toss_billing.create_plan('동시성 요금제', 1000) \\gset
	SELECT count(toss_billing.add_plan_meter(:id, 'calls', unit_amount => 1));
	-- every invoice totals 0 (a forever 100% coupon), so periods are settled
	-- without Toss and the subscriptions move on month by month
	SELECT toss_billing.create_coupon('ALLFREE', percent_off => 100, duration => 'forever');
	SELECT count(toss_billing.create_subscription('cc-' || i, :id)) FROM generate_series(1, $subscriptions) i;
	SELECT count(toss_billing.apply_coupon(s.id, 'ALLFREE')) FROM toss_billing.subscriptions s;
	-- business customers: the consent rule is not what this test is about
	SELECT toss_billing.set_invoice_policy(consent_rule => 'off');
});
my $first_sub = $node->safe_psql('postgres', 'SELECT min(id) FROM toss_billing.subscriptions');
$node->safe_psql('postgres', 'SELECT count(*) FROM toss_billing._claim_due(1000)');

# the recorders: a random subscription (half the time a hot one), a random key (the same key always
# carries the same quantity, so a repeated key is a harmless duplicate), a
# time up to 70 days back (in earlier windows too)
my $dir = $node->basedir;
open(my $fh, '>', "$dir/usage.sql") or die;
print $fh "\\set r random($first_sub, $first_sub + 2 * $subscriptions - 1)\n";
# half the calls for one hot subscription, the others at random
print $fh "\\set s CASE WHEN :r >= $first_sub + $subscriptions THEN $first_sub ELSE :r END\n";
print $fh "\\set k random(1, 2000000000)\n";
print $fh "\\set back random(0, 6048000)\n";
print $fh "SELECT toss_billing.record_usage(:s, 'calls', :k % 9 + 1, toss_billing.now() - :back * interval '1 second', 'k' || :k);\n";
close $fh;
my ($out, $err) = ('', '');
my $bench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '6', '-j', '2', '-T', '25', '-f', "$dir/usage.sql", '-d', $node->connstr('postgres') ],
	'>', \$out, '2>', \$err);

# meanwhile the runner's claims finalise, and the months go by
my @under_load;
for my $m (1 .. $months)
{
	for (1 .. 10)
	{
		$node->safe_psql('postgres', 'SELECT count(*) FROM toss_billing._claim_due(1000)');
		select(undef, undef, undef, 0.2);
	}
	# the month's invoices were all finalised while usage kept coming: the
	# recorders' locks (FOR KEY SHARE) never make the runner skip a subscription
	push @under_load, $node->safe_psql('postgres', qq{
		SELECT count(*) FROM toss_billing.invoices WHERE kind = 'period' AND period_number = @{[$m - 1]} AND status <> 'draft'});
	# (in the subscriptions' time zone: a month from the 1st is the next 1st)
	$node->safe_psql('postgres', "SET TimeZone = 'Asia/Seoul'; SELECT toss_billing.advance_clock('1 month')");
}
my $still_running = $bench->pumpable;
$bench->finish;
ok($still_running, 'the recorders were still running when the last month was finalised');
is(join(',', @under_load), join(',', ($subscriptions) x $months), 'every month, every period invoice was finalised under load');
like($out, qr/number of transactions actually processed: (\d+)/, 'the recorders ran') or diag($err);
my ($calls) = $out =~ /number of transactions actually processed: (\d+)/;
is($out =~ /number of failed transactions: (\d+)/ ? $1 : 0, 0, 'no record_usage call failed');

# a last month and the last claims (one period per subscription each): every
# record's window is finalised now
$node->safe_psql('postgres', "SET TimeZone = 'Asia/Seoul'; SELECT toss_billing.advance_clock('1 month')");
$node->safe_psql('postgres', 'SELECT count(*) FROM toss_billing._claim_due(1000)') for 1 .. 3;

my $records = $node->safe_psql('postgres', 'SELECT count(*) FROM toss_billing.usage_records');
cmp_ok($records, '>', 100, "$records usage records from $calls calls");
is($node->safe_psql('postgres', 'SELECT count(*) FROM toss_billing.usage_records WHERE invoice_id IS NULL'),
	0, 'every usage record is billed');
my $late = $node->safe_psql('postgres',
	"SELECT count(*) FROM toss_billing.invoice_items WHERE kind = 'usage' AND late");
cmp_ok($late, '>', 0, "$late late usage lines (usage recorded after its window was finalised)");
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (
	    SELECT u.subscription_id, sum(u.quantity) AS recorded,
	           (SELECT coalesce(sum(it.quantity), 0) FROM toss_billing.invoice_items it
	             WHERE it.subscription_id = u.subscription_id AND it.kind = 'usage') AS billed
	      FROM toss_billing.usage_records u GROUP BY u.subscription_id) x
	 WHERE recorded <> billed}),
	0, 'per subscription, the usage lines add up to exactly the usage recorded');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM toss_billing.usage_records u
	 WHERE NOT EXISTS (SELECT FROM toss_billing.invoice_items it
	                    WHERE it.invoice_id = u.invoice_id AND it.kind = 'usage')}),
	0, 'every record is billed by an invoice with a usage line');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT subscription_id, period_number FROM toss_billing.invoices
	                       WHERE kind = 'period' GROUP BY 1, 2 HAVING count(*) > 1) d}),
	0, 'one invoice per subscription period');
cmp_ok($node->safe_psql('postgres', "SELECT count(*) FROM toss_billing.invoices WHERE kind = 'period' AND status = 'paid'"),
	'>=', $subscriptions * ($months + 2), 'every subscription was invoiced for every period');

# coupons: a race for a coupon with 5 redemptions among 20 subscriptions;
# and 6 sessions redeeming one coupon for one subscription at once
$node->safe_psql('postgres', q{
	SELECT toss_billing.create_coupon('RACE', percent_off => 10, max_redemptions => 5);
	SELECT toss_billing.create_coupon('SAME', amount_off => 100);
	CREATE FUNCTION public.try_coupon(sub bigint, code text) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
	    PERFORM toss_billing.apply_coupon(sub, code);
	    RETURN 'redeemed';
	EXCEPTION WHEN object_not_in_prerequisite_state THEN
	    RETURN 'refused';
	END $$;
});
open($fh, '>', "$dir/coupon.sql") or die;
print $fh "\\set s random($first_sub, $first_sub + $subscriptions - 1)\n";
print $fh "SELECT public.try_coupon(:s, 'RACE');\n";
print $fh "SELECT public.try_coupon($first_sub, 'SAME');\n";
close $fh;
($out, $err) = ('', '');
IPC::Run::run(
	[ 'pgbench', '-n', '-c', '6', '-j', '2', '-t', '20', '-f', "$dir/coupon.sql", '-d', $node->connstr('postgres') ],
	'>', \$out, '2>', \$err) or diag($err);
like($out, qr/number of transactions actually processed: 120/, 'the coupon race ran') or diag($out . $err);
is($node->safe_psql('postgres', q{
	SELECT c.times_redeemed || '/' || count(r.*) FROM toss_billing.coupons c
	  LEFT JOIN toss_billing.coupon_redemptions r ON r.coupon_id = c.id WHERE c.code = 'RACE' GROUP BY c.id}),
	'5/5', 'RACE: redeemed 5 times, its maximum, and counted once each');
is($node->safe_psql('postgres', q{
	SELECT c.times_redeemed || '/' || count(r.*) FROM toss_billing.coupons c
	  LEFT JOIN toss_billing.coupon_redemptions r ON r.coupon_id = c.id WHERE c.code = 'SAME' GROUP BY c.id}),
	'1/1', 'SAME: one subscription redeeming it at once from six sessions counts once');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT subscription_id FROM toss_billing.coupon_redemptions
	                       WHERE status = 'active' GROUP BY 1 HAVING count(*) > 1) x}),
	0, 'at most one active coupon per subscription');

$node->stop;
$emulator->kill_kill;
done_testing();
