# Secrets stay secret: the Toss secret key and billing keys never reach the
# server log (even at debug levels with every statement logged) or a dump,
# and a dump restores to working billing keys under the same root key.
use strict;
use warnings;
use MIME::Base64;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TossTest;

my ($url, $emulator) = start_emulator();
my $node = toss_node('secrets',
	log_statement => "'all'",
	log_min_messages => 'debug2',
	log_min_error_statement => 'debug2',
	log_error_verbosity => 'verbose');

my $billing_key = 'SecretBillingKey/0123456789abcdefghijklmnop=';
is(issue_key($node, 'cust-secret', billingKey => $billing_key), 'active', 'key issued');
is($node->safe_psql('postgres',
	"SELECT status FROM toss_billing.toss_charge('cust-secret', 4900, '구독', 'order-secret-1')"),
	'DONE', 'charge done');

# failures and an unknown outcome exercise every logging path
emu_post('/__emulator/faults', { match => { method => 'POST', orderId => 'order-secret-2' },
	fault => { code => 'REJECT_CARD_COMPANY' } });
emu_post('/__emulator/faults', { match => { orderId => 'order-secret-3' },
	fault => { reset => JSON::PP::true } });
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT toss_billing.toss_charge('cust-secret', 4900, '구독', 'order-secret-2')");
like($err, qr/toss declined the charge/, 'decline reported');
unlike($err, qr/SecretBillingKey|\Q$TossTest::SECRET\E/, 'the error text carries no secret');
($rc, $out, $err) = $node->psql('postgres',
	"SELECT toss_billing.toss_charge('cust-secret', 4900, '구독', 'order-secret-3')");
like($err, qr/outcome of the charge order-secret-3 is unknown/, 'unknown outcome reported');
unlike($err, qr/SecretBillingKey|\Q$TossTest::SECRET\E/, 'the unknown-outcome text carries no secret');

my $auth = encode_base64("$TossTest::SECRET:", '');
my $log = slurp_file($node->logfile);
ok(length($log) > 1000, 'the server log was written at debug level');
unlike($log, qr/\Q$TossTest::SECRET\E/, 'the secret key is not in the server log');
unlike($log, qr/\Q$auth\E/, 'the authorization header is not in the server log');
unlike($log, qr/SecretBillingKey/, 'the billing key is not in the server log');

# the dump holds ciphertext only
my $dumpfile = $node->basedir . '/dump.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', $dumpfile ], 'pg_dump runs');
my $dump = slurp_file($dumpfile);
like($dump, qr/COPY toss_billing\.billing_keys/, 'the dump contains the billing key rows');
unlike($dump, qr/SecretBillingKey/, 'the dump has no plaintext billing key');
unlike($dump, qr/\Q$TossTest::SECRET\E/, 'the dump has no secret key');

# restored under the same root key, the sealed keys still charge
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'), '-f', $dumpfile ],
	'dump restores');
is($node->safe_psql('restored',
	"SELECT status FROM toss_billing.toss_charge('cust-secret', 1000, '복원 후 결제', 'order-secret-4')"),
	'DONE', 'a restored billing key charges');
my $req = emu_get('/__emulator/requests?limit=1')->[0];
like($req->{rawPath}, qr{^/v1/billing/SecretBillingKey%2F0123}, 'the restored key is the original key');

$node->stop;
$emulator->kill_kill;
done_testing();
