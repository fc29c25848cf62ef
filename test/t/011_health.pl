# toss_billing.health() checks that need a server of their own: the root
# key (a server that could not load it), the secret key file (missing,
# then too widely readable, then fixed) and pg_cron (no job, the job's
# runs failing, then fixed), each failing on purpose and passing after the
# fix, with the other checks still answering; and the call queue: full
# because another database's calls took every slot of the server, a call
# waiting too long for a worker, and a server without the engine.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TossTest;

my ($url, $emulator) = start_emulator();

sub check
{
	my ($node, $name) = @_;
	return $node->safe_psql('postgres',
		"SELECT status || ': ' || message FROM toss_billing.health() WHERE name = '$name'");
}

# ---------------------------------------------------------------- the root key

my $nokey = toss_node('health_nokey', 'toss_billing.root_key_file' => "'/nonexistent/toss_root.key'");
like(check($nokey, 'root_key'), qr/^fail: the root key is not loaded.*could not be opened/,
	'a server that could not read its root key fails the root_key check');
is($nokey->safe_psql('postgres', 'SELECT count(*) FROM toss_billing.health()'), '8',
	'every other check still answers');
$nokey->stop;

my $node = toss_node('health', max_worker_processes => 16);
like(check($node, 'root_key'), qr/^ok: the root key is loaded$/, 'the root key is loaded');

# ---------------------------------------------------------------- the secret key file

my $dir = $node->basedir;
is(issue_key($node, 'hl-one'), 'active', 'a customer with a key of merchant default');
like(check($node, 'secret_keys'), qr/^ok: /, 'the secret key can be read');
rename("$dir/secret.keys", "$dir/secret.keys.away") or die;
like(check($node, 'secret_keys'), qr/^fail: no call can be made for merchant default: could not open the file/,
	'a missing key file fails');
rename("$dir/secret.keys.away", "$dir/secret.keys") or die;
chmod 0644, "$dir/secret.keys";
like(check($node, 'secret_keys'), qr/^fail: .*not safe to use: The file has group or world access/,
	'a key file others can read fails');
unlike(check($node, 'secret_keys'), qr/test_sk_/, 'the sentence never holds the key');
chmod 0600, "$dir/secret.keys";
like(check($node, 'secret_keys'), qr/^ok: /, 'fixed: the key can be read again');

# ---------------------------------------------------------------- pg_cron

like(check($node, 'pg_cron'), qr/^warn: pg_cron is not installed/, 'without pg_cron: a warning');
$node->safe_psql('postgres', 'CREATE EXTENSION pg_cron');
like(check($node, 'pg_cron'), qr/^fail: there is no pg_cron job toss_billing_run_due/, 'no job: fail');
my $plan = $node->safe_psql('postgres', "SELECT id FROM toss_billing.create_plan('건강 월간', 9900)");
$node->safe_psql('postgres', "SELECT toss_billing.create_subscription('hl-one', $plan)");
like(check($node, 'runner'), qr/^fail: run_due has never run/, 'a subscription and no run: the runner check fails');

my $job = $node->safe_psql('postgres', "SELECT toss_billing.schedule('* * * * *')");
like(check($node, 'pg_cron'), qr/^ok: .*has not run yet/, 'scheduled, not run yet');
# the job's runs fail (its command is broken)
$node->safe_psql('postgres', "SELECT cron.alter_job($job, command => 'CALL toss_billing.run_due(-1)')");
ok($node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM cron.job_run_details WHERE jobid = $job AND status = 'failed'", 't'),
	'pg_cron ran the broken job');
like(check($node, 'pg_cron'), qr/^fail: the last run of the pg_cron job toss_billing_run_due failed: .*must not be negative/,
	'its failure fails the check, with pg_cron\'s message');
like(check($node, 'runner'), qr/^fail: run_due has never run/, 'and still nothing has run');
# fixed: schedule() puts the command back
is($node->safe_psql('postgres', "SELECT toss_billing.schedule('* * * * *')"), $job, 'the same job, rescheduled');
ok($node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM cron.job_run_details WHERE jobid = $job AND status = 'succeeded'", 't'),
	'pg_cron ran the runner');
like(check($node, 'pg_cron'), qr/^ok: .*its last run succeeded \(1 of the last 2 failed\)/, 'fixed: pg_cron passes');
like(check($node, 'runner'), qr/^ok: run_due ran at /, 'and the runner ran');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM toss_billing.runs WHERE kind = 'run_due' AND status = 'finished' AND done = 1}),
	'1', 'the run log has the run that charged the subscription');
is($node->safe_psql('postgres', "SELECT count(*) FROM toss_billing.health() WHERE status = 'fail'"),
	'0', 'nothing fails now');
$node->safe_psql('postgres', 'SELECT toss_billing.unschedule()');
like(check($node, 'pg_cron'), qr/^fail: there is no pg_cron job/, 'unscheduled: fail again');
$node->stop;

# ---------------------------------------------------------------- the call queue

# The engine's call slots are the server's, shared by its databases: when
# another database's calls take them all, this database's callers wait too,
# and its worker_queue check fails although none of the calls is its own.
my $q = toss_node('health_queue', max_worker_processes => 16, 'toss_billing.queue_depth' => 16);
like(check($q, 'worker_queue'), qr/^ok: 0 calls queued and 0 running \(toss_billing\.engine_queue\); 0 of the server's 16 call slots taken$/,
	'an idle engine: ok, with the server\'s slots');
$q->safe_psql('postgres', 'CREATE DATABASE other');
$q->safe_psql('other', 'CREATE EXTENSION toss_billing');
$q->safe_psql('other', "SELECT toss_billing.create_customer(NULL, NULL, 'hl-other')");
my $ak = authkey('hl-other');
is($q->safe_psql('other', "SELECT status FROM toss_billing.toss_issue_billing_key('hl-other', '$ak')"),
	'active', 'the other database has a customer with a key');
my @hung = hung_charges($q, 'other', 'hl-other', 'hl-hang-', 16, '3s');
is($q->safe_psql('postgres', 'SELECT coalesce(sum(queued + running), 0) FROM toss_billing.engine_queue'), '0',
	'none of the calls is this database\'s');
like(check($q, 'worker_queue'),
	qr/^fail: the server's call queue is full: all 16 slots are taken, 0 of them by this database's calls \(0 queued, 0 running\); callers wait$/,
	'every slot taken by the other database: this database\'s check fails');
like($q->safe_psql('other', "SELECT status || ': ' || message FROM toss_billing.health() WHERE name = 'worker_queue'"),
	qr/^fail: .*all 16 slots are taken, 16 of them by this database's calls \(0 queued, 16 running\)/,
	'and the other database\'s check fails with its own calls counted');
$_->quit for @hung;
ok($q->poll_query_until('postgres',
	"SELECT message ~ '; 0 of the server''s 16 call slots taken\$' FROM toss_billing.health() WHERE name = 'worker_queue' AND status = 'ok'"),
	'the calls timed out: the slots are free again and the check passes');

# A call waiting for an engine worker (the only worker slot is pg_cron's
# launcher's): it is queued, and once it has waited longer than
# queue_wait_after the check warns.
is(issue_key($q, 'hl-wait'), 'active', 'a customer of this database with a key');
$q->append_conf('postgresql.conf', "max_worker_processes = 1\n");
$q->restart;
my $waiting = $q->background_psql('postgres', on_error_stop => 0);
$waiting->query_until(qr/started/, q(\echo started
SET statement_timeout = '60s';
SELECT status FROM toss_billing.toss_charge('hl-wait', 4900, 'wait', 'hl-wait-1');
));
ok($q->poll_query_until('postgres', 'SELECT coalesce(sum(queued), 0) = 1 FROM toss_billing.engine_queue'),
	'the call waits in the queue');
ok($q->poll_query_until('postgres',
	"SELECT status = 'warn' FROM toss_billing.health(queue_wait_after => '500 milliseconds') WHERE name = 'worker_queue'"),
	'it waited longer than queue_wait_after: the check warns');
like($q->safe_psql('postgres',
	"SELECT message FROM toss_billing.health(queue_wait_after => '500 milliseconds') WHERE name = 'worker_queue'"),
	qr/^1 calls queued and 0 running \(toss_billing\.engine_queue\), the oldest waiting 00:00:\d\d(\.\d+)?; 1 of the server's 16 call slots taken$/,
	'the sentence says how long the oldest call has waited');
$q->safe_psql('postgres',
	"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%hl-wait-1%' AND pid <> pg_backend_pid()");
$waiting->quit;
is($q->safe_psql('postgres', "SELECT count(*) FROM toss_billing.payments WHERE order_id = 'hl-wait-1'"), '0',
	'the cancelled call left nothing behind');
ok($q->poll_query_until('postgres',
	"SELECT status = 'ok' AND message ~ '^0 calls queued and 0 running .*; 0 of the server''s 16 call slots taken\$' FROM toss_billing.health() WHERE name = 'worker_queue'"),
	'and the queue is empty again');

# A server without the engine (toss_billing not preloaded) refuses every
# call, and the check fails saying so.
$q->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_cron'\n");
$q->restart;
like(check($q, 'worker_queue'),
	qr/^fail: there is no call engine: toss_billing is not in shared_preload_libraries, so every Toss call is refused$/,
	'no engine: the check fails');
my ($rc, $out, $err) = $q->psql('postgres', "SELECT toss_billing.toss_charge('hl-wait', 4900, 'no engine', 'hl-noengine-1')");
like($err, qr/toss_billing (is|was) not loaded at server start/, 'and a call is indeed refused, with a clear error');
is($q->safe_psql('postgres', "SELECT count(*) FROM toss_billing.payments WHERE order_id = 'hl-noengine-1'"), '0', 'and nothing recorded');
# (loading the library there used to end the session: it defined settings
# that only server start may define)
$q->safe_psql('postgres', 'CREATE DATABASE later');
$q->safe_psql('later', 'CREATE EXTENSION toss_billing');
like($q->safe_psql('later', "SELECT status || ': ' || message FROM toss_billing.health() WHERE name = 'root_key'"),
	qr/^fail: .*not loaded at server start/, 'the extension installs there, and health() says what is missing');
$q->stop;
$emulator->kill_kill;
done_testing();
