# TossTest — shared set-up for toss_billing's TAP tests: the local Toss
# emulator, a cluster with toss_billing preloaded and its key files, and
# small helpers around the emulator's admin API.
package TossTest;

use strict;
use warnings;
use Exporter 'import';
use File::Basename qw(dirname);
use File::Spec;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

our @EXPORT = qw(start_emulator emu_get emu_post toss_node authkey issue_key hung_charges);

our $SECRET = 'test_sk_tap000000000000000001';
my $http = HTTP::Tiny->new(timeout => 30);
my $json = JSON::PP->new->canonical;
my $emulator_url;
my $emulator_harness;

# A test that dies half-way must not leave its emulator running.
END { $emulator_harness->kill_kill if $emulator_harness && $emulator_harness->pumpable; }

sub start_emulator
{
	my (@flags) = @_;
	my $run = File::Spec->rel2abs(dirname(__FILE__) . '/../../emulator/run');
	# The project's merchants: the emulator answers other secret keys with 401 UNAUTHORIZED_KEY.
	my $merchants = File::Spec->rel2abs(dirname(__FILE__) . '/../../scripts/merchants.json');
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ $run, '--port', '0', '--merchants', $merchants, @flags ], '>', \$out, '2>', \$err);
	my $deadline = time + 20;
	my $addr;
	until (($addr) = $out =~ /^listening on (\S+)/m)
	{
		die "emulator did not start: $err" if time > $deadline;
		$h->pump_nb;
		select(undef, undef, undef, 0.05);
	}
	$emulator_url = "http://$addr";
	$emulator_harness = $h;
	return ($emulator_url, $h);
}

sub emu_get
{
	my ($path) = @_;
	my $r = $http->get("$emulator_url$path");
	die "GET $path: $r->{status} $r->{content}" unless $r->{success};
	return $json->decode($r->{content});
}

sub emu_post
{
	my ($path, $body) = @_;
	my $r = $http->post("$emulator_url$path",
		{ headers => { 'Content-Type' => 'application/json' }, content => $json->encode($body) });
	die "POST $path: $r->{status} $r->{content}" unless $r->{success};
	return $json->decode($r->{content});
}

# A started cluster with toss_billing (and pg_cron) preloaded and the
# extension created.  %conf adds postgresql.conf lines.
sub toss_node
{
	my ($name, %conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $dir = $node->basedir;
	open(my $fh, '>', "$dir/root.key") or die;
	print $fh join('', map { sprintf('%02x', int(rand(256))) } 1 .. 32), "\n";
	close $fh;
	open($fh, '>', "$dir/secret.keys") or die;
	print $fh "$SECRET\n";
	close $fh;
	chmod 0600, "$dir/root.key", "$dir/secret.keys";
	my %settings = (
		shared_preload_libraries => "'pg_cron,toss_billing'",
		'cron.database_name' => "'postgres'",
		'cron.use_background_workers' => 'on',
		'toss_billing.root_key_file' => "'$dir/root.key'",
		'toss_billing.secret_key_file' => "'$dir/secret.keys'",
		'toss_billing.api_url' => "'$emulator_url'",
		%conf);
	$node->append_conf('postgresql.conf',
		join('', map { "$_ = $settings{$_}\n" } sort keys %settings));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION toss_billing');
	return $node;
}

sub authkey
{
	my ($customer, %opt) = @_;
	my $r = emu_post('/__emulator/auth-keys',
		{ secretKey => $SECRET, customerKey => $customer, %opt });
	return $r->{authKey};
}

# Create a customer with an active billing key.
sub issue_key
{
	my ($node, $customer, %opt) = @_;
	$node->safe_psql('postgres',
		"SELECT toss_billing.create_customer(NULL, NULL, '$customer')");
	my $ak = authkey($customer, %opt);
	return $node->safe_psql('postgres',
		"SELECT status FROM toss_billing.toss_issue_billing_key('$customer', '$ak')");
}

# $n charges of $customer in database $db whose requests hang at the
# emulator (order ids "$prefix<i>", each call given up after $timeout),
# each from a session of its own; returns once all $n are in flight, with
# the sessions (each still waiting for its charge's outcome).
sub hung_charges
{
	my ($node, $db, $customer, $prefix, $n, $timeout) = @_;
	emu_post('/__emulator/faults',
		{ match => { method => 'POST', orderIdPrefix => $prefix }, fault => { hang => JSON::PP::true } });
	my @sessions;
	for my $i (1 .. $n)
	{
		my $s = $node->background_psql($db, on_error_stop => 0);
		$s->query_until(qr/started/, qq(\\echo started
SET toss_billing.timeout = '$timeout';
SELECT status FROM toss_billing.toss_charge('$customer', 4900, 'hang', '$prefix$i');
));
		push @sessions, $s;
	}
	$node->poll_query_until($db,
		"SELECT count(*) = $n FROM toss_billing.payments WHERE order_id LIKE '$prefix%' AND state = 'in_flight'")
	  or die "the $n hung charges did not all go out";
	return @sessions;
}

1;
