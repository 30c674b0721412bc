// A batch insert with the npm mariadb connector's batch(), timed. Usage:
//   node batch.js PORT USER PASSWORD DATABASE TABLE ROWS BULK(true|false)
// Creates TABLE (id BIGINT PRIMARY KEY, uid BIGINT, note VARCHAR(40)), inserts ROWS rows in one
// batch() call with the connector's `bulk` option as given, checks the count and prints the
// milliseconds the batch() took. With bulk on and a server that announces
// MARIADB_CLIENT_STMT_BULK_OPERATIONS the connector sends COM_STMT_BULK_EXECUTE; otherwise
// it pipelines one COM_STMT_EXECUTE per row.
'use strict';
const mariadb = require('mariadb');

const [port, user, password, database, table, rows, bulk] = process.argv.slice(2);

(async () => {
  const conn = await mariadb.createConnection({
    host: '127.0.0.1', port: Number(port), user, password, database, bulk: bulk === 'true',
  });
  await conn.query(`DROP TABLE IF EXISTS ${table}`);
  await conn.query(`CREATE TABLE ${table} (id BIGINT PRIMARY KEY, uid BIGINT, note VARCHAR(40))`);
  const values = Array.from({ length: Number(rows) }, (_, i) => [i + 1, i * 7, `row ${i + 1}`]);
  const start = process.hrtime.bigint();
  await conn.batch(`INSERT INTO ${table} (id, uid, note) VALUES (?, ?, ?)`, values);
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  const [{ n }] = await conn.query(`SELECT COUNT(*) AS n FROM ${table}`);
  if (Number(n) !== Number(rows)) throw new Error(`${n} rows stored, ${rows} sent`);
  console.log(ms.toFixed(1));
  await conn.end();
})().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
