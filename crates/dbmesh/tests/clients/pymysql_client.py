"""PyMySQL and mysql-connector-python through dbmesh: text and prepared statements, types,
transactions, errors. Usage: python3 pymysql_client.py PORT. Exits non-zero on any failure."""
import datetime
import decimal
import sys

import mysql.connector
import pymysql

PORT = int(sys.argv[1])


def check(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def pymysql_checks():
    conn = pymysql.connect(host="127.0.0.1", port=PORT, user="dbmesh", password="dbmesh",
                           database="bank", charset="utf8mb4", autocommit=True)
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS py_t")
    cur.execute("CREATE TABLE py_t (id INT PRIMARY KEY, name VARCHAR(50), amount DECIMAL(12,2),"
                " at DATETIME(3), data BLOB) DEFAULT CHARSET=utf8mb4")
    rows = [(i, f"名字 {i} 🚀", decimal.Decimal(f"{i}.25"),
             datetime.datetime(2024, 1, 1, 12, 0, i, 123000), bytes([i, 0, 255])) for i in range(1, 51)]
    cur.executemany("INSERT INTO py_t VALUES (%s, %s, %s, %s, %s)", rows)
    check(cur.rowcount, 50, "executemany rowcount")
    cur.execute("SELECT * FROM py_t ORDER BY id")
    check(list(cur.fetchall()), rows, "round trip")
    cur.execute("SELECT COUNT(*), SUM(amount) FROM py_t WHERE id > %s", (10,))
    check(cur.fetchone(), (40, decimal.Decimal("1230.00")), "aggregate")
    conn.begin()
    cur.execute("DELETE FROM py_t")
    conn.rollback()
    cur.execute("SELECT COUNT(*) FROM py_t")
    check(cur.fetchone()[0], 50, "rollback")
    try:
        cur.execute("SELECT * FROM py_missing")
        raise AssertionError("expected an error")
    except pymysql.err.ProgrammingError as e:
        check(e.args[0], 1146, "missing table code")
    cur.execute("SELECT DATABASE()")
    check(cur.fetchone()[0], "bank", "logical database")
    conn.ping()
    conn.close()


def connector_checks(pure):
    for plugin in ("mysql_native_password", "caching_sha2_password"):
        conn = mysql.connector.connect(host="127.0.0.1", port=PORT, user="dbmesh", password="dbmesh",
                                       database="bank", auth_plugin=plugin, use_pure=pure)
        cur = conn.cursor(prepared=True)
        cur.execute("SELECT id, name, amount FROM py_t WHERE id = %s", (7,))
        check(cur.fetchall(), [(7, "名字 7 🚀", decimal.Decimal("7.25"))], f"prepared ({plugin})")
        cur.execute("UPDATE py_t SET amount = amount + %s WHERE id BETWEEN %s AND %s", (1, 1, 5))
        check(cur.rowcount, 5, "prepared update rowcount")
        conn.commit()
        cur = conn.cursor()
        cur.execute("SELECT SUM(amount) FROM py_t WHERE id <= 5")
        check(cur.fetchone()[0], decimal.Decimal("16.25") + 5 * (1 if plugin == "mysql_native_password" else 2), "committed")
        conn.close()


pymysql_checks()
connector_checks(pure=True)
print("python clients: all checks passed")
