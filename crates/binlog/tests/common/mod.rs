//! Fixture of the binlog tests: a mariadbd that logs rows as a rebalancing source must.

use backend::ConnectOptions;
use testkit::MariaDb;

/// A source server: binlog on, ROW format, full images, server id 1.
pub fn source() -> MariaDb {
    MariaDb::builder()
        .row_binlog(1)
        .start()
        .expect("mariadbd starts")
}

pub fn options(server: &MariaDb) -> ConnectOptions {
    ConnectOptions::plaintext("src", &server.address(), "root", "", None)
}

/// A table with a column of every type the follower decodes, and the statements that fill it
/// with edge values (one multi-row INSERT).
pub const ALL_TYPES: &str = "CREATE TABLE app.all_types (
    id INT PRIMARY KEY,
    ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
    mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
    f FLOAT, d DOUBLE, dec1 DECIMAL(10,2), dec2 DECIMAL(30,12), dec3 DECIMAL(5,0) UNSIGNED,
    vc VARCHAR(20) CHARACTER SET utf8mb4, vcl VARCHAR(300) CHARACTER SET latin1,
    vb VARBINARY(40), c CHAR(10) CHARACTER SET utf8mb4, cl CHAR(100) CHARACTER SET utf8mb4,
    bn BINARY(4), e ENUM('a','b','c'), s SET('x','y','z'),
    tx TEXT, tb TINYBLOB, mb MEDIUMBLOB, lb LONGBLOB, j JSON,
    dt DATE, dtm DATETIME, dtm6 DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME, tm2 TIME(2), tm6 TIME(6),
    y YEAR, b1 BIT(1), b13 BIT(13), b64 BIT(64),
    g INT AS (i + 1) VIRTUAL
)";

pub const ALL_TYPES_ROWS: &str =
    "INSERT INTO app.all_types (id, ti, tiu, si, siu, mi, miu, i, iu, bi, biu,
    f, d, dec1, dec2, dec3, vc, vcl, vb, c, cl, bn, e, s, tx, tb, mb, lb, j,
    dt, dtm, dtm6, ts, tm, tm2, tm6, y, b1, b13, b64) VALUES
 (1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
  -9223372036854775808, 18446744073709551615,
  1.1, -2.2250738585072014e-308, -12345678.99, 123456789012345678.123456789012, 99999,
  'héllo 😀', REPEAT('é', 300), X'00FF10', 'ab  ', REPEAT('ü', 100), X'0102', 'c', 'x,z',
  'text ✓', X'00', REPEAT('m', 70000), X'DEADBEEF', '{\"k\": [1, 2.5, \"v\"]}',
  '2024-02-29', '1000-01-01 00:00:00', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.499',
  '-838:59:59', '-00:00:01.25', '12:34:56.000001', 2155, b'1', b'1010101010101',
  18446744073709551615),
 (2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.00, -0.000000000001, 0, '', '', '', '', '', X'', 'a', '',
  '', '', '', '', '[]', '0000-00-00', '0000-00-00 00:00:00', '2000-01-01 00:00:00.5',
  '1970-01-01 00:00:01', '00:00:00', '00:00:00.99', '-00:00:00.000001', 0, b'0', 0, 0),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)";
