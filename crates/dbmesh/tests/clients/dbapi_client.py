"""The client matrix for Python DB-API drivers with their default settings (PyMySQL,
mysqlclient): both interpolate parameters client-side and open with autocommit off.
Usage: python3 dbapi_client.py pymysql|mysqlclient PORT TABLE. See README.md."""
import sys

DRIVER, PORT, TABLE = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if DRIVER == "pymysql":
    import pymysql as driver
else:
    import MySQLdb as driver

ROWS = [(j + 1, bytes(range(32 * j, 32 * j + 32))) for j in range(8)]


def connect(**kw):
    args = dict(host="127.0.0.1", port=PORT, user="dbmesh", password="dbmesh", database="bank")
    if DRIVER == "mysqlclient":
        args["db"] = args.pop("database")
        args["passwd"] = args.pop("password")
    args.update(kw)
    return driver.connect(**args)


def check(got, want, what):
    if got != want:
        raise AssertionError(f"{DRIVER} on {TABLE}: {what}: got {got!r}, want {want!r}")


conn = connect()
cur = conn.cursor()
cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
cur.execute(f"CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, b VARBINARY(64),"
            " name VARCHAR(20) CHARACTER SET utf8mb4)")
for row in ROWS[:4]:
    check(cur.execute(f"INSERT INTO {TABLE} (id, b) VALUES (%s, %s)", row), 1, "insert rowcount")
check(cur.executemany(f"INSERT INTO {TABLE} (id, b) VALUES (%s, %s)", ROWS[4:]), 4,
      "executemany rowcount")
conn.commit()
cur.execute(f"SELECT id, b FROM {TABLE} ORDER BY id")
check([(i, bytes(b)) for i, b in cur.fetchall()], ROWS, "round trip of all 256 byte values")
for i, b in ROWS:
    cur.execute(f"SELECT HEX(b) FROM {TABLE} WHERE id = %s", (i,))
    check(cur.fetchone()[0], b.hex().upper(), f"stored bytes of id {i}")
check(cur.execute(f"UPDATE {TABLE} SET name = %s WHERE id = %s", ("x", 3)), 1, "update rowcount")
check(cur.execute(f"DELETE FROM {TABLE} WHERE id = %s", (8,)), 1, "delete rowcount")
cur.execute(f"INSERT INTO {TABLE} (id, b) VALUES (%s, %s)", ROWS[7])
conn.commit()
conn.close()

for charset, ident, name in (("latin1", 9, "café"), ("gbk", 10, "乗'")):
    other = connect(charset=charset)
    other.cursor().execute(f"INSERT INTO {TABLE} (id, name) VALUES (%s, %s)", (ident, name))
    other.commit()
    cur = other.cursor()
    cur.execute(f"SELECT name FROM {TABLE} WHERE id = %s", (ident,))
    check(cur.fetchone()[0], name, f"{charset} round trip")
    other.close()

conn = connect()
cur = conn.cursor()
cur.execute(f"SELECT id, HEX(name) FROM {TABLE} WHERE id IN (3, 9, 10) ORDER BY id")
check(list(cur.fetchall()), [(3, "78"), (9, "636166C3A9"), (10, "E4B99727")], "stored names")
cur.execute(f"SELECT COUNT(*) FROM {TABLE}")
check(cur.fetchone()[0], 10, "row count")
conn.close()
print(f"{DRIVER} on {TABLE}: ok")
