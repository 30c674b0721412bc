-- Logical schema of the differential test (crates/dbmesh/tests/differential.rs).
-- Run once through the proxy (DDL fan-out to every physical table) and once directly
-- on the unsharded reference database. Statements end with ';' at the end of a line.
--
-- users, orders, refunds: sharded by user_id (per layout, see README.md), one binding
--   group. refunds stays empty.
-- products: broadcast (a copy on every data source).
-- regions: single table on ds_1.
--
-- The collation is spelled out so that case-insensitive, PAD SPACE comparison
-- ('alice' = 'Alice' = 'alice ') holds on MariaDB and MySQL 8 alike.

CREATE TABLE users (
  user_id BIGINT NOT NULL,
  name VARCHAR(40) NULL,
  city VARCHAR(20) NULL,
  score INT NULL,
  balance DECIMAL(12,2) NOT NULL,
  rating DOUBLE NULL,
  points BIGINT UNSIGNED NOT NULL,
  vip TINYINT NOT NULL,
  code VARBINARY(8) NULL,
  created DATE NOT NULL,
  last_login DATETIME NULL,
  PRIMARY KEY (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE orders (
  order_id BIGINT NOT NULL,
  user_id BIGINT NOT NULL,
  product_id INT NOT NULL,
  status ENUM('new','paid','shipped','returned','cancelled') NOT NULL,
  amount DECIMAL(10,2) NULL,
  qty INT NOT NULL,
  discount FLOAT NULL,
  placed DATETIME NOT NULL,
  ship_date DATE NULL,
  note VARCHAR(60) NULL,
  PRIMARY KEY (order_id),
  KEY by_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE refunds (
  refund_id BIGINT NOT NULL,
  user_id BIGINT NOT NULL,
  order_id BIGINT NOT NULL,
  amount DECIMAL(10,2) NOT NULL,
  reason VARCHAR(40) NULL,
  PRIMARY KEY (refund_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE products (
  product_id INT NOT NULL,
  title VARCHAR(40) NOT NULL,
  category VARCHAR(20) NULL,
  price DECIMAL(8,2) NOT NULL,
  weight DOUBLE NULL,
  PRIMARY KEY (product_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE regions (
  city VARCHAR(20) NOT NULL,
  region VARCHAR(20) NOT NULL,
  population INT NOT NULL,
  PRIMARY KEY (city)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
