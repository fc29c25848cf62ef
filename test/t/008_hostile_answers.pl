# Hostile answers from upstream (issue 9 §2, §3): bytes PostgreSQL's text
# cannot hold, answers that echo the request's secrets back, replies built to
# exhaust memory, and a transactions cursor that never advances.
#   - invalid UTF-8 and \u0000 in charge, lookup, cancel, issuance and
#     webhook-fetch answers: nothing breaks, and pg_dump -> restore gives back
#     every row
#   - a billing key, secret key or Authorization value echoed in an error is
#     stored nowhere: not in the dump, not in the server log
#   - a 15 MB JSON array reply grows the backend by a bounded amount, and so
#     do four 6 MB replies to the runner
#   - reconcile stops with a clear error on a cursor that does not advance
use strict;
use warnings;
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TossTest;

my ($url, $emulator) = start_emulator();
my $node = toss_node('hostile', log_statement => "'all'", log_min_messages => 'debug1');

sub fault { emu_post('/__emulator/faults', { match => $_[0], fault => $_[1], times => $_[2] // 1 }) }
sub clear { HTTP::Tiny->new->request('DELETE', "$url/__emulator/faults") }
sub sql_err
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return $rc == 0 ? "ok: $out" : $err;
}

# ---------------------------------------------------------------- bytes text cannot hold

my $bk = 'HostileBytesKey0123456789abcdefghij+/=';
is(issue_key($node, 'hb-1', billingKey => $bk), 'active', 'a customer with a known billing key');
my $n = 0;
for my $kind (qw(invalidUtf8 nulEscape))
{
	$n++;
	# charge: the answer itself; lookup: the answer is lost, the lookup hostile
	fault({ method => 'POST', orderId => "hb-charge-$n" }, { hostile => $kind });
	# (a hostile answer is no answer: the lookup by order id settles the charge)
	like(sql_err("SELECT status FROM toss_billing.toss_charge('hb-1', 4900, '바이트', 'hb-charge-$n')"),
		qr/^ok: DONE/, "$kind charge answer: settled by the lookup");
	fault({ method => 'POST', orderId => "hb-lookup-$n" }, { lostResponse => JSON::PP::true });
	fault({ method => 'GET', orderId => "hb-lookup-$n" }, { hostile => $kind });
	like(sql_err("SELECT status FROM toss_billing.toss_charge('hb-1', 4900, '바이트', 'hb-lookup-$n')"),
		qr/TB006/, "$kind lookup answer: TB006");
	# a good charge, then a hostile cancel answer
	my $pk = $node->safe_psql('postgres',
		"SELECT payment_key FROM toss_billing.toss_charge('hb-1', 4900, '바이트', 'hb-cancel-$n')");
	fault({ method => 'POST', paymentKey => $pk }, { hostile => $kind });
	like(sql_err("SELECT status FROM toss_billing.toss_cancel('$pk', '환불')"),
		qr/^ok: CANCELED|TB006/, "$kind cancel answer: settled by the replay, or TB006");
	# issuance: the hostile answer, then its idempotent replay
	$node->safe_psql('postgres', "SELECT toss_billing.create_customer(NULL, NULL, 'hb-issue-$n')");
	my $ak = authkey("hb-issue-$n");
	fault({ method => 'POST', pathPrefix => '/v1/billing/authorizations/issue' }, { hostile => $kind });
	like(sql_err("SELECT status FROM toss_billing.toss_issue_billing_key('hb-issue-$n', '$ak')"),
		qr/^ok: active|TB006/, "$kind issuance answer: settled by the replay, or TB006");
	# webhook: the Payment fetched for it
	fault({ method => 'GET', paymentKey => $pk }, { hostile => $kind });
	like(sql_err(qq{SELECT outcome FROM toss_billing.ingest_webhook('{"eventType":"PAYMENT_STATUS_CHANGED","createdAt":"2026-06-0${n}T10:00:00.000000","data":{"paymentKey":"$pk","orderId":"hb-cancel-$n","status":"CANCELED"}}')}),
		qr/TB006|could not|not valid|unsafe|answer/i, "$kind webhook fetch: an error, nothing stored");
}
clear();
my $raw = $node->safe_psql('postgres', q{
	SELECT count(*) FROM toss_billing.attempts
	 WHERE order_id ~ '^hb-charge-' AND position('\xfffec3'::bytea IN response) > 0 OR
	       order_id ~ '^hb-charge-' AND position(convert_to('\u0000', 'UTF8') IN response) > 0});
is($raw, '2', 'the hostile charge answers are kept, as bytes, exactly as received');
is($node->safe_psql('postgres', q{
	SELECT string_agg(order_id || ':' || state, ' ' ORDER BY id) FROM toss_billing.payments WHERE order_id ~ '^hb-(charge|lookup)-'}),
	'hb-charge-1:done hb-lookup-1:unknown hb-charge-2:done hb-lookup-2:unknown',
	'settled by a lookup where one was honest, unknown where not');

# pg_dump -> restore into a new database: every row comes back
my $dump = $node->basedir . '/hostile.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', $dump ], 'pg_dump succeeds');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'), '-f', $dump ],
	'the dump restores without an error');
my $count_sql = q{
	SELECT string_agg(format('%s=%s', c.relname,
	                         (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM toss_billing.%I', c.relname),
	                                                              false, true, '')))[1]::text), ' ' ORDER BY c.relname)
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname = 'toss_billing' AND c.relkind = 'r'};
my $before = $node->safe_psql('postgres', $count_sql);
is($node->safe_psql('restored', $count_sql), $before, 'the restored ledger has the same rows in every table');
note("rows: $before");

# ---------------------------------------------------------------- secrets echoed back

my $secret = $TossTest::SECRET;
my $authorization = 'Basic ' . encode_base64("$secret:", '');
fault({ method => 'POST', orderId => 'hb-echo-1' }, { hostile => 'echoSecrets' });
like(sql_err("SELECT status FROM toss_billing.toss_charge('hb-1', 4900, '메아리', 'hb-echo-1')"),
	qr/TB00[0-9]/, 'an answer that echoes the request fails the charge');
clear();
my $echoed = $node->safe_psql('postgres', q{
	SELECT failure_message FROM toss_billing.attempts WHERE order_id = 'hb-echo-1'});
like($echoed, qr/\[redacted\]/, 'the stored message has the secrets redacted');
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', "$dump.2" ], 'pg_dump again');
my $text = slurp_file("$dump.2") . slurp_file($node->logfile);
(my $bk_pct = $bk) =~ s/([^A-Za-z0-9_.~-])/sprintf('%%%02X', ord($1))/ge;
for my $s ([ 'the billing key', $bk ], [ 'the percent-encoded billing key', $bk_pct ],
	[ 'the secret key', $secret ], [ 'the Authorization value', $authorization ])
{
	unlike($text, qr/\Q$s->[1]\E/i, "$s->[0] is in neither the dump nor the server log");
}

# ---------------------------------------------------------------- memory

# a backend's peak resident memory (VmHWM), in kB
sub hwm
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/status") or die "no /proc/$pid/status: $!";
	while (<$fh>) { return $1 if /^VmHWM:\s+(\d+) kB/ }
	die 'no VmHWM';
}
SKIP:
{
	skip 'no /proc on this system', 3 unless -r '/proc/self/status';
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $s->query_safe('SELECT pg_backend_pid()');
	$s->query_safe("SELECT count(*) FROM toss_billing.payments");    # warm the backend
	my $start = hwm($pid);
	fault({ method => 'GET', pathPrefix => '/v1/transactions' }, { hostile => 'hugeArray', hostileSize => 15_000_000 });
	my $r = $s->query("SELECT recovered FROM toss_billing.reconcile(now() - interval '1 day', now())");
	my $grown = (hwm($pid) - $start) / 1024;
	cmp_ok($grown, '<', 64, sprintf('a 15 MB array reply grew the backend by %.1f MB (bound 64 MB)', $grown));
	clear();

	# four 6 MB answers to the runner's charges (an answer object may be 1 MiB)
	my $plan = $node->safe_psql('postgres', "SELECT id FROM toss_billing.create_plan('메모리', 9900)");
	for my $i (1 .. 4)
	{
		issue_key($node, "hb-mem-$i");
		$node->safe_psql('postgres', "SELECT toss_billing.create_subscription('hb-mem-$i', $plan)");
		fault({ method => 'POST', customerKey => "hb-mem-$i" }, { hostile => 'hugeArray', hostileSize => 6_000_000 });
	}
	# a fresh backend: the peak of the one before stays in its VmHWM
	$s->quit;
	$s = $node->background_psql('postgres', on_error_stop => 0);
	$pid = $s->query_safe('SELECT pg_backend_pid()');
	$s->query_safe("SELECT count(*) FROM toss_billing.payments");
	$start = hwm($pid);
	$s->query('CALL toss_billing.run_due()');
	$grown = (hwm($pid) - $start) / 1024;
	cmp_ok($grown, '<', 48, sprintf('four 6 MB replies grew the runner by %.1f MB (bound 48 MB)', $grown));
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
		 WHERE c.customer_key LIKE 'hb-mem-%' AND p.state = 'done'}), '4',
		'their lookups settled all four as paid');
	clear();
	$s->quit;
}

# ---------------------------------------------------------------- a cursor that never advances

fault({ method => 'GET', pathPrefix => '/v1/transactions' }, { stuckCursor => JSON::PP::true }, 1000);
my $t0 = time;
like(sql_err("SET statement_timeout = '60s'; SELECT * FROM toss_billing.reconcile(now() - interval '1 day', now())"),
	qr/08P01/, 'a transactions cursor that does not advance stops reconcile with 08P01');
cmp_ok(time - $t0, '<', 30, 'and it stops at once, not at the statement timeout');
clear();

$node->stop;
$emulator->kill_kill;
done_testing();
