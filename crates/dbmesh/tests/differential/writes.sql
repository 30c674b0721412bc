-- Write scenarios of the differential test: run in order, after the queries, through the
-- proxy and on the reference. Each runs prepared (as written, then with parameters) inside a
-- transaction that is rolled back, then as text for real; affected rows must be equal, then
-- the tables' contents (category `contents` in the report). Format as in queries.sql.

-- category: broadcast_writes
-- the client sees one copy's affected rows
INSERT INTO products (product_id, title, category, price, weight) VALUES (9001, 'Widget', 'tools', 1.50, 0.2), (9002, 'Gadget', 'tools', 2.50, NULL)
UPDATE products SET price = price + 1 WHERE product_id = 9001
UPDATE products SET category = 'gear' WHERE category = 'tools'
UPDATE products SET price = 3.50 WHERE product_id = 9002
UPDATE products SET price = 3.50 WHERE product_id = 9002
INSERT INTO products (product_id, title, category, price, weight) VALUES (9002, 'Gadget', 'x', 1.00, NULL) ON DUPLICATE KEY UPDATE price = 9.99
DELETE FROM products WHERE product_id = 9001

-- category: sharded_writes
-- several shards, several tables of one data source
UPDATE orders SET qty = qty + 1 WHERE user_id IN (8, 9, 10)
UPDATE orders SET note = 'bulk' WHERE status = 'returned'
UPDATE users SET score = score WHERE user_id = 3
DELETE FROM orders WHERE user_id = 11 AND qty > 1
INSERT INTO orders (order_id, user_id, product_id, status, amount, qty, discount, placed, ship_date, note) VALUES (90001, 1, 1, 'new', 1.00, 1, NULL, '2024-01-01 00:00:00', NULL, NULL), (90002, 2, 1, 'new', 2.00, 1, NULL, '2024-01-01 00:00:00', NULL, NULL), (90003, 37, 2, 'paid', 3.00, 2, 0.5, '2024-01-02 00:00:00', NULL, 'x')
INSERT INTO orders (order_id, user_id, product_id, status, amount, qty, discount, placed, ship_date, note) VALUES (90001, 1, 1, 'new', 1.00, 1, NULL, '2024-01-01 00:00:00', NULL, NULL) ON DUPLICATE KEY UPDATE qty = qty + 5
INSERT IGNORE INTO orders (order_id, user_id, product_id, status, amount, qty, discount, placed, ship_date, note) VALUES (90002, 2, 1, 'new', 2.00, 1, NULL, '2024-01-01 00:00:00', NULL, NULL)
UPDATE IGNORE orders SET qty = 2 WHERE user_id = 1
UPDATE orders SET amount = amount * 2 WHERE user_id BETWEEN 30 AND 41 AND status = 'paid'
DELETE FROM orders WHERE order_id >= 90000 AND user_id IN (1, 2, 37)

-- category: single_writes
UPDATE regions SET population = population + 1 WHERE city = 'Oslo'
