# Hardening that needs a server of its own: the key files' ownership and
# mode rules, checked where the server reads them, and the webhook
# receiver's role, which keeps a billing key out of the server log even
# with log_statement = all for the whole cluster.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TossTest;

my ($url, $emulator) = start_emulator();
my $node = toss_node('hardening',
	log_statement => "'all'",
	log_min_duration_statement => '0',
	log_parameter_max_length => '-1',
	log_parameter_max_length_on_error => '-1',
	log_min_error_statement => 'debug2');

# ---------------------------------------------------------------- the receiver role

my $rx_key = 'ReceiverSecretKey0123456789abcdefghijklmn=';
my $op_key = 'OperatorSecretKey0123456789abcdefghijklmn=';
is(issue_key($node, 'cust-rx', billingKey => $rx_key), 'active', 'a key for the receiver test');
is(issue_key($node, 'cust-op', billingKey => $op_key), 'active', 'a key for the control');
is(issue_key($node, 'cust-files'), 'active', 'a key for the key-file tests');
$node->safe_psql('postgres', q{
	CREATE ROLE hook_rx LOGIN;
	CREATE ROLE hook_op LOGIN IN ROLE toss_billing_operator;
});
like($node->safe_psql('postgres', "SELECT toss_billing.configure_receiver('hook_rx')"),
	qr/log_statement=none/, 'configure_receiver sets the role up');

my $payload = sub {
	my ($key, $n) = @_;
	return qq({"eventType":"BILLING_DELETED","createdAt":"2026-01-0${n}T00:00:00","data":{"billingKey":"$key","reason":"분실 신고"}});
};
# the receiver sends the payload as a literal, through a prepared statement
# and once so that it fails: none of it may reach the log
my $rx_sql = sprintf(q{
	SELECT outcome FROM toss_billing.ingest_webhook('%s');
	PREPARE hook(jsonb) AS SELECT outcome FROM toss_billing.ingest_webhook($1);
	EXECUTE hook('%s');
}, $payload->($rx_key, 1), $payload->($rx_key, 2));
my $out = $node->safe_psql('postgres', $rx_sql, extra_params => [ '-U', 'hook_rx' ]);
like($out, qr/applied: billing key \d+ deleted/, 'the receiver applied BILLING_DELETED');
my ($rc, $o, $e) = $node->psql('postgres',
	sprintf(q{SELECT toss_billing.ingest_webhook('%s', '"not an object"')}, $payload->($rx_key, 3)),
	extra_params => [ '-U', 'hook_rx' ]);
like($e, qr/headers must be a JSON object/, 'a failing delivery errors');
# what the receiver role may do: ingest_webhook, nothing else
($rc, $o, $e) = $node->psql('postgres', 'SELECT count(*) FROM toss_billing.payments',
	extra_params => [ '-U', 'hook_rx' ]);
like($e, qr/permission denied/, 'the receiver reads no ledger');

# the control: an operator role that was not configured
$out = $node->safe_psql('postgres',
	sprintf(q{SELECT outcome FROM toss_billing.ingest_webhook('%s')}, $payload->($op_key, 4)),
	extra_params => [ '-U', 'hook_op' ]);
like($out, qr/applied: billing key \d+ deleted/, 'the control applied BILLING_DELETED');

my $log = slurp_file($node->logfile);
like($log, qr/\Q$op_key\E/, 'without the receiver settings the billing key is logged (the test sees the log)');
unlike($log, qr/\Q$rx_key\E/, 'with them, the billing key is in no log line: not as text, parameter or failed statement');

# ---------------------------------------------------------------- key files

my $dir = $node->basedir;
my $good_root = slurp_file("$dir/root.key");

sub restart_with_root_key
{
	my ($path) = @_;
	$node->append_conf('postgresql.conf', "toss_billing.root_key_file = '$path'\n");
	$node->restart;
}

# a root key file the group or the world may read is refused at start
open(my $fh, '>', "$dir/root-0644.key") or die;
print $fh $good_root;
close $fh;
chmod 0644, "$dir/root-0644.key";
my $log_offset = -s $node->logfile;
restart_with_root_key("$dir/root-0644.key");
$log = substr(slurp_file($node->logfile), $log_offset);
like($log, qr/could not load its root key.*\n.*group or world access/,
	'the server logs why the root key was refused');
($rc, $o, $e) = $node->psql('postgres',
	"SELECT toss_billing.toss_charge('cust-files', 1000, '구독')");
like($e, qr/root key is not loaded.*\n.*DETAIL:  The file has group or world access/,
	'a call says the root key is not loaded, and why');

# owned by someone other than the server's user or root: refused too
{
	# made by test/scripts/run-tests, which runs as root
	my $foreign = $ENV{TB_FOREIGN_KEY_FILE};
	die 'TB_FOREIGN_KEY_FILE must name a readable key file owned by another OS user (test/scripts/run-tests makes one)'
	  unless defined $foreign && -r $foreign && (stat $foreign)[4] != $>;
	$log_offset = -s $node->logfile;
	restart_with_root_key($foreign);
	$log = substr(slurp_file($node->logfile), $log_offset);
	like($log, qr/must be owned by the database server's OS user or by root/,
		'a root key file owned by another user is refused');
	$node->append_conf('postgresql.conf', "toss_billing.secret_key_file = '$foreign'\n");
	restart_with_root_key("$dir/root.key");
	($rc, $o, $e) = $node->psql('postgres',
		"SELECT toss_billing.toss_charge('cust-files', 1000, '구독')");
	like($e, qr/secret key file is not safe to use.*\n.*must be owned by the database server's OS user or by root/,
		'a secret key file owned by another user is refused');
	$node->append_conf('postgresql.conf', "toss_billing.secret_key_file = '$dir/secret.keys'\n");
}

# the right files work again
restart_with_root_key("$dir/root.key");
is(issue_key($node, 'cust-after2'), 'active', 'with 0600 files owned by the server, keys are issued');

$node->stop;
$emulator->kill_kill;
done_testing();
