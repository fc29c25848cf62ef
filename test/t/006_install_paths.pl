# One schema, two ways to get it: a fresh install of the default version
# (the script generated from sql/schema/) and an install of the oldest
# release, 0.1.0, updated step by step with ALTER EXTENSION UPDATE, must give
# the same catalog: every object and its definition (function bodies and
# settings, columns and their order, defaults, constraints, indexes,
# triggers, views, types), every ACL, and the tables and sequences
# registered with pg_extension_config_dump.  Any difference fails the test
# and is printed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('paths');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'toss_billing'\n");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('postgres', 'CREATE DATABASE updated');
$node->safe_psql('fresh', 'CREATE EXTENSION toss_billing');
$node->safe_psql('updated', "CREATE EXTENSION toss_billing VERSION '0.1.0'");
$node->safe_psql('updated', 'ALTER EXTENSION toss_billing UPDATE');

my $default = $node->safe_psql('fresh',
	"SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'toss_billing'");
is($node->safe_psql('fresh', "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'toss_billing'"),
	$default, 'the fresh install is at the default version');
is($node->safe_psql('updated', "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'toss_billing'"),
	$default, 'the updated install is at the default version');

# The schema as pg_dump sees it in binary-upgrade mode, which dumps every
# member object of the extension one by one.  Lines that only carry OIDs,
# transaction ids or physical storage (the fast-default "missing value" a
# column added by ALTER TABLE keeps) are dropped: they differ between any two
# databases.
sub schema_dump
{
	my ($db) = @_;
	my ($stdout, $stderr);
	my $ok = IPC::Run::run(
		[ 'pg_dump', '--schema-only', '--binary-upgrade', '-d', $node->connstr($db) ],
		'>', \$stdout, '2>', \$stderr);
	die "pg_dump $db failed: $stderr" unless $ok;
	# A column an upgrade dropped stays in the catalog as a dropped column,
	# which binary-upgrade mode recreates and drops again: those statements
	# (and the placeholder in CREATE TABLE) say nothing about the schema.
	$stdout =~ s/^UPDATE pg_catalog\.pg_attribute\n(?:[^;]*\n)*?[^;]*pg\.dropped[^;]*;\n//mg;
	my @lines;
	for my $line (split /\n/, $stdout)
	{
		next if $line =~ /^--|^\s*$|^\\(un)?restrict |binary_upgrade_set_next_|binary_upgrade_set_missing_value/;
		next if $line =~ /relfrozenxid|^WHERE oid = |pg\.dropped/;
		$line =~ s/'\d+'::pg_catalog\.oid/OID/g;
		$line =~ s/'\{[0-9,]*\}'/'{OIDS}'/g;
		push @lines, $line;
	}
	return join("\n", @lines) . "\n";
}

# What binary-upgrade mode hides behind OIDs: the config-dump registrations
# by name, and the extension's own attributes.
my $catalog_sql = q{
SELECT 'extension ' || e.extname || ' in schema ' || n.nspname || ', relocatable ' || e.extrelocatable::text
       || ', owned by ' || pg_catalog.pg_get_userbyid(e.extowner)
  FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'toss_billing'
UNION ALL
SELECT * FROM (
  SELECT 'config dump ' || c.cfg::regclass::text || ' where ' || pg_catalog.quote_literal(c.cond)
    FROM pg_catalog.pg_extension e,
         LATERAL unnest(e.extconfig, e.extcondition) AS c(cfg, cond)
   WHERE e.extname = 'toss_billing'
   ORDER BY 1) AS cfg;
};

my %dump = map { $_ => schema_dump($_) } qw(fresh updated);
my %catalog = map { $_ => $node->safe_psql($_, $catalog_sql) } qw(fresh updated);

ok(length($dump{fresh}) > 10000, 'the dump lists the extension\'s objects');
like($dump{fresh}, qr/CREATE FUNCTION toss_billing\._record_outcomes/, 'functions are in the dump');
like($catalog{fresh}, qr/config dump toss_billing\.payments/, 'config-dump registrations are listed');

for my $what ([ 'schema (pg_dump --binary-upgrade --schema-only)', \%dump ],
	[ 'extension attributes and config-dump registrations', \%catalog ])
{
	my ($name, $h) = @$what;
	my $same = $h->{fresh} eq $h->{updated};
	ok($same, "fresh install and 0.1.0 + ALTER EXTENSION UPDATE agree: $name");
	next if $same;
	my $dir = $node->basedir;
	open(my $a, '>', "$dir/fresh.txt") or die;
	print $a $h->{fresh};
	close $a;
	open(my $b, '>', "$dir/updated.txt") or die;
	print $b $h->{updated};
	close $b;
	my ($diff, $err);
	IPC::Run::run([ 'diff', '-u', "$dir/fresh.txt", "$dir/updated.txt" ], '>', \$diff, '2>', \$err);
	diag("differences (- fresh, + updated):\n$diff");
}

$node->stop;
done_testing();
