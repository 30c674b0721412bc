<?php
// The client matrix for PHP PDO with its default settings (emulated prepares: parameters are
// interpolated client-side). Usage: php pdo_client.php PORT TABLE. See README.md.
[$_, $port, $table] = $argv;
$rows = [];
for ($j = 0; $j < 8; $j++) {
    $bytes = '';
    for ($k = 32 * $j; $k < 32 * $j + 32; $k++) {
        $bytes .= chr($k);
    }
    $rows[] = [$j + 1, $bytes];
}

function connect(string $port, string $charset = ''): PDO {
    $dsn = "mysql:host=127.0.0.1;port=$port;dbname=bank" . ($charset ? ";charset=$charset" : '');
    return new PDO($dsn, 'dbmesh', 'dbmesh', [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
}

function check($got, $want, string $what): void {
    global $table;
    if ($got !== $want) {
        fwrite(STDERR, "pdo on $table: $what: got " . var_export($got, true) . ", want " . var_export($want, true) . "\n");
        exit(1);
    }
}

$db = connect($port);
$db->exec("DROP TABLE IF EXISTS $table");
$db->exec("CREATE TABLE $table (id BIGINT PRIMARY KEY, b VARBINARY(64), name VARCHAR(20) CHARACTER SET utf8mb4)");
$insert = $db->prepare("INSERT INTO $table (id, b) VALUES (?, ?)");
foreach ($rows as [$id, $bytes]) {
    $insert->bindValue(1, $id, PDO::PARAM_INT);
    $insert->bindValue(2, $bytes, PDO::PARAM_LOB);
    $insert->execute();
    check($insert->rowCount(), 1, "insert rowcount of id $id");
}
$got = $db->query("SELECT id, b FROM $table ORDER BY id")->fetchAll(PDO::FETCH_NUM);
check(array_map(fn($r) => [(int) $r[0], $r[1]], $got), $rows, 'round trip of all 256 byte values');
$hex = $db->prepare("SELECT HEX(b) FROM $table WHERE id = ?");
foreach ($rows as [$id, $bytes]) {
    $hex->execute([$id]);
    check($hex->fetchColumn(), strtoupper(bin2hex($bytes)), "stored bytes of id $id");
}
$update = $db->prepare("UPDATE $table SET name = ? WHERE id = ?");
$update->execute(['x', 3]);
check($update->rowCount(), 1, 'update rowcount');
$delete = $db->prepare("DELETE FROM $table WHERE id = ?");
$delete->execute([8]);
check($delete->rowCount(), 1, 'delete rowcount');
$insert->execute([8, $rows[7][1]]);

foreach ([['latin1', 9, "caf\xe9", 'café'], ['gbk', 10, "\x81\x5c'", "乗'"]] as [$charset, $id, $encoded, $utf8]) {
    $other = connect($port, $charset);
    $other->prepare("INSERT INTO $table (id, name) VALUES (?, ?)")->execute([$id, $encoded]);
    $select = $other->prepare("SELECT name FROM $table WHERE id = ?");
    $select->execute([$id]);
    check($select->fetchColumn(), $encoded, "$charset round trip");
}

$names = $db->query("SELECT id, HEX(name) FROM $table WHERE id IN (3, 9, 10) ORDER BY id")->fetchAll(PDO::FETCH_NUM);
check(array_map(fn($r) => [(int) $r[0], $r[1]], $names), [[3, '78'], [9, '636166C3A9'], [10, 'E4B99727']], 'stored names');
check((int) $db->query("SELECT COUNT(*) FROM $table")->fetchColumn(), 10, 'row count');
echo "pdo on $table: ok\n";
