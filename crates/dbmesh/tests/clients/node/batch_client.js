// npm mariadb batch() (COM_STMT_BULK_EXECUTE) through dbmesh, compared with the same batches
// on a MariaDB server directly. Usage:
//   node batch_client.js PORT TABLE     with DIRECT=port,user,password,database in the environment
// Batches: rows on every shard carrying all 256 byte values, NULLs and text; a batch with a
// duplicate key in its middle (MariaDB stores none of its rows); a batch of more placeholders
// than one statement may hold; UPDATE and DELETE batches. After each, the answers and the
// stored rows must be the same on both.
'use strict';
const assert = require('node:assert/strict');
const mariadb = require('mariadb');

const [port, table] = process.argv.slice(2);
const [directPort, directUser, directPassword, directDatabase] = (process.env.DIRECT || '').split(',');
const ddl = `CREATE TABLE ${table} (id BIGINT PRIMARY KEY, b VARBINARY(64), name VARCHAR(20) CHARACTER SET utf8mb4, n INT DEFAULT 7)`;
const insert = `INSERT INTO ${table} (id, b, name) VALUES (?, ?, ?)`;

// Row j (1..40): 32 bytes starting at 32*(j-1) mod 256 (rows 1-8 hold all 256 byte values),
// every third name NULL, every fifth b NULL.
const rows = Array.from({ length: 40 }, (_, i) => [
  i + 1,
  i % 5 === 4 ? null : Buffer.from(Array.from({ length: 32 }, (_, k) => (32 * i + k) % 256)),
  i % 3 === 2 ? null : `row ${i + 1} \u4e57'`,
]);

async function stored(conn) {
  const got = await conn.query(`SELECT id, HEX(b) AS b, HEX(name) AS name, n FROM ${table} ORDER BY id`);
  return got.map((r) => [Number(r.id), r.b, r.name, r.n]);
}

async function outcome(conn, sql, values) {
  try {
    const r = await conn.batch(sql, values);
    return { affectedRows: r.affectedRows };
  } catch (e) {
    return { errno: e.errno, sqlState: e.sqlState };
  }
}

(async () => {
  const proxy = await mariadb.createConnection({ host: '127.0.0.1', port: Number(port), user: 'dbmesh', password: 'dbmesh', database: 'bank' });
  const direct = await mariadb.createConnection({ host: '127.0.0.1', port: Number(directPort), user: directUser, password: directPassword, database: directDatabase });
  for (const conn of [proxy, direct]) {
    await conn.query(`DROP TABLE IF EXISTS ${table}`);
    await conn.query(ddl);
  }
  const big = Array.from({ length: 25000 }, (_, i) => [1000 + i, Buffer.from([i % 256, 0, 0x5c, 0x27]), `big ${i}`]);
  const update = `UPDATE ${table} SET name = ?, n = n + 1 WHERE id = ?`;
  const remove = `DELETE FROM ${table} WHERE id = ?`;
  const batches = [
    ['rows on every shard', insert, rows],
    ['a duplicate key in the middle', insert, [[101, null, 'a'], [102, null, 'b'], [3, null, 'dup'], [104, null, 'c']]],
    ['75,000 placeholders', insert, big],
    ['an update per row', update, [['u1', 1], [null, 2], ['u3', 3], ['u4', 4], ['none', 9999], ['u1 again', 1]]],
    ['a value too long in the last row', update, [['v5', 5], ['v6', 6], ['x'.repeat(21), 7]]],
    ['a delete per row', remove, [[8], [9], [10], [11], [9999]]],
  ];
  for (const [what, sql, values] of batches) {
    const want = await outcome(direct, sql, values);
    const got = await outcome(proxy, sql, values);
    assert.deepStrictEqual(got, want, `${table}: ${what}: the batch's answer`);
    assert.deepStrictEqual(await stored(proxy), await stored(direct), `${table}: ${what}: the stored rows`);
    console.log(`${table}: ${what}: ${JSON.stringify(got)}`);
  }
  assert.equal((await stored(proxy)).length, rows.length + big.length - 5); // 8-11 and 9999 (a row of the big batch)
  await direct.query(`DROP TABLE ${table}`);
  await proxy.end();
  await direct.end();
})().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
