#!/usr/bin/perl
# The client matrix for Perl DBI with DBD::MariaDB and its default settings (placeholders are
# interpolated client-side). Usage: perl dbi_client.pl PORT TABLE. See README.md.
# DBD::MariaDB always talks utf8mb4, so the latin1 and gbk steps are not part of this client.
use strict;
use warnings;
use DBI;

my ($port, $table) = @ARGV;
my @rows = map { [ $_ + 1, join('', map { chr } (32 * $_) .. (32 * $_ + 31)) ] } 0 .. 7;

sub check {
    my ($got, $want, $what) = @_;
    die "dbi on $table: $what: got '$got', want '$want'\n" unless $got eq $want;
}

my $dbh = DBI->connect("DBI:MariaDB:database=bank;host=127.0.0.1;port=$port", 'dbmesh', 'dbmesh',
    { RaiseError => 1, PrintError => 0 });
$dbh->do("DROP TABLE IF EXISTS $table");
$dbh->do("CREATE TABLE $table (id BIGINT PRIMARY KEY, b VARBINARY(64), name VARCHAR(20) CHARACTER SET utf8mb4)");
my $insert = $dbh->prepare("INSERT INTO $table (id, b) VALUES (?, ?)");
for my $row (@rows) {
    $insert->bind_param(1, $row->[0]);
    $insert->bind_param(2, $row->[1], DBI::SQL_VARBINARY);
    check($insert->execute, 1, "insert rowcount of id $row->[0]");
}
my $got = $dbh->selectall_arrayref("SELECT id, b FROM $table ORDER BY id");
check(scalar @$got, 8, 'rows read back');
for my $i (0 .. 7) {
    check($got->[$i][0], $rows[$i][0], "id of row $i");
    check(unpack('H*', $got->[$i][1]), unpack('H*', $rows[$i][1]), "bytes of id $rows[$i][0]");
    my ($hex) = $dbh->selectrow_array("SELECT HEX(b) FROM $table WHERE id = ?", undef, $rows[$i][0]);
    check($hex, uc unpack('H*', $rows[$i][1]), "stored bytes of id $rows[$i][0]");
}
check($dbh->do("UPDATE $table SET name = ? WHERE id = ?", undef, "\x{4e57}'", 3), 1, 'update rowcount');
check($dbh->do("DELETE FROM $table WHERE id = ?", undef, 8), 1, 'delete rowcount');
$insert->bind_param(1, 8);
$insert->bind_param(2, $rows[7][1], DBI::SQL_VARBINARY);
$insert->execute;
my ($name) = $dbh->selectrow_array("SELECT HEX(name) FROM $table WHERE id = 3");
check($name, 'E4B99727', 'stored name');
my ($count) = $dbh->selectrow_array("SELECT COUNT(*) FROM $table");
check($count, 8, 'row count');
print "dbi on $table: ok\n";
