// The client matrix for Node.js drivers with their default settings. Usage:
//   node client.js mysql2|sequelize|mariadb PORT TABLE      (see ../README.md)
// mysql2's execute() prepares and binds every JavaScript number as DOUBLE; Sequelize's
// create() goes through it. The npm mariadb connector's execute() pipelines PREPARE and
// EXECUTE (statement id 0xFFFFFFFF) when the server says it is MariaDB.
'use strict';
const assert = require('node:assert/strict');

const [driver, port, table] = process.argv.slice(2);
const rows = Array.from({ length: 8 }, (_, j) => [j + 1, Buffer.from(Array.from({ length: 32 }, (_, k) => 32 * j + k))]);
const options = { host: '127.0.0.1', port: Number(port), user: 'dbmesh', password: 'dbmesh', database: 'bank' };
const ddl = `CREATE TABLE ${table} (id BIGINT PRIMARY KEY, b VARBINARY(64), name VARCHAR(20) CHARACTER SET utf8mb4)`;

function check(got, want, what) {
  assert.deepStrictEqual(got, want, `${driver} on ${table}: ${what}`);
}

async function checkStored(query) {
  for (const [id, bytes] of rows) {
    check(await query(`SELECT HEX(b) AS h FROM ${table} WHERE id = ?`, [id]), [{ h: bytes.toString('hex').toUpperCase() }], `stored bytes of id ${id}`);
  }
  check(await query(`SELECT HEX(name) AS h FROM ${table} WHERE id = ?`, [3]), [{ h: 'E4B99727' }], 'stored name');
  check(await query(`SELECT COUNT(*) AS n FROM ${table}`, []), [{ n: 8 }], 'row count');
}

async function mysql2() {
  const mysql = require('mysql2/promise');
  const conn = await mysql.createConnection(options);
  await conn.query(`DROP TABLE IF EXISTS ${table}`);
  await conn.query(ddl);
  for (const [id, bytes] of rows.slice(0, 4)) {
    const [result] = await conn.execute(`INSERT INTO ${table} (id, b) VALUES (?, ?)`, [id, bytes]);
    check(result.affectedRows, 1, `prepared insert of id ${id}`);
  }
  for (const [id, bytes] of rows.slice(4)) {
    const [result] = await conn.query(`INSERT INTO ${table} (id, b) VALUES (?, ?)`, [id, bytes]);
    check(result.affectedRows, 1, `interpolated insert of id ${id}`);
  }
  const [got] = await conn.execute(`SELECT id, b FROM ${table} ORDER BY id`);
  check(got.map((r) => [Number(r.id), r.b]), rows, 'round trip of all 256 byte values');
  const [update] = await conn.execute(`UPDATE ${table} SET name = ? WHERE id = ?`, ["\u4e57'", 3]);
  check(update.affectedRows, 1, 'update rowcount');
  const [del] = await conn.execute(`DELETE FROM ${table} WHERE id = ?`, [8]);
  check(del.affectedRows, 1, 'delete rowcount');
  await conn.execute(`INSERT INTO ${table} (id, b) VALUES (?, ?)`, rows[7]);
  await checkStored(async (sql, params) => (await conn.execute(sql, params))[0]);
  for (const [charset, id, name, hex] of [['latin1', 9, 'café', '636166C3A9'], ['gbk', 10, "\u4e57'", 'E4B99727']]) {
    const other = await mysql.createConnection({ ...options, charset });
    await other.query(`INSERT INTO ${table} (id, name) VALUES (?, ?)`, [id, name]);
    const [[back]] = await other.query(`SELECT name, HEX(name) AS h FROM ${table} WHERE id = ?`, [id]);
    check([back.name, back.h], [name, hex], `${charset} round trip`);
    await other.end();
  }
  await conn.end();
}

async function sequelize() {
  const { Sequelize, DataTypes } = require('sequelize');
  const db = new Sequelize('bank', options.user, options.password, { host: options.host, port: options.port, dialect: 'mysql', logging: false });
  const Row = db.define(table, {
    id: { type: DataTypes.BIGINT, primaryKey: true },
    b: DataTypes.BLOB,
    name: DataTypes.STRING(20),
  }, { tableName: table, timestamps: false });
  await db.query(`DROP TABLE IF EXISTS ${table}`);
  await db.query(ddl);
  for (const [id, b] of rows) {
    await Row.create({ id, b });
  }
  const got = await Row.findAll({ order: [['id', 'ASC']] });
  check(got.map((r) => [Number(r.id), r.b]), rows, 'round trip of all 256 byte values');
  check(await Row.update({ name: "\u4e57'" }, { where: { id: 3 } }), [1], 'update rowcount');
  check(await Row.destroy({ where: { id: 8 } }), 1, 'delete rowcount');
  await Row.create({ id: 8, b: rows[7][1] });
  await checkStored((sql, replacements) => db.query(sql, { replacements, type: 'SELECT' }));
  await db.close();
}

async function mariadb() {
  const mariadb = require('mariadb');
  const conn = await mariadb.createConnection(options);
  await conn.query(`DROP TABLE IF EXISTS ${table}`);
  await conn.query(ddl);
  for (const [id, bytes] of rows.slice(0, 4)) {
    check((await conn.execute(`INSERT INTO ${table} (id, b) VALUES (?, ?)`, [id, bytes])).affectedRows, 1, `prepared insert of id ${id}`);
  }
  for (const [id, bytes] of rows.slice(4)) {
    check((await conn.query(`INSERT INTO ${table} (id, b) VALUES (?, ?)`, [id, bytes])).affectedRows, 1, `interpolated insert of id ${id}`);
  }
  const got = await conn.execute(`SELECT id, b FROM ${table} ORDER BY id`);
  check(got.map((r) => [Number(r.id), r.b]), rows, 'round trip of all 256 byte values');
  check((await conn.execute(`UPDATE ${table} SET name = ? WHERE id = ?`, ["\u4e57'", 3])).affectedRows, 1, 'update rowcount');
  check((await conn.execute(`DELETE FROM ${table} WHERE id = ?`, [8])).affectedRows, 1, 'delete rowcount');
  await conn.execute(`INSERT INTO ${table} (id, b) VALUES (?, ?)`, rows[7]);
  await checkStored(async (sql, params) => (await conn.query(sql, params)).map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'bigint' ? Number(v) : v]))));
  await conn.end();
}

({ mysql2, sequelize, mariadb })[driver]().then(
  () => console.log(`${driver} on ${table}: ok`),
  (e) => { console.error(e.stack || String(e)); process.exit(1); },
);
