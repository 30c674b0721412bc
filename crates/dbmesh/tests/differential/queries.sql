-- Differential corpus: every query runs through dbmesh (logical schema `shop`) and directly on
-- an unsharded reference database holding the same rows; the answers must be equal.
-- Format: see README.md in this directory. One query per line; `-- category: NAME` starts a
-- group; a trailing ` -- FLAGS` sets how rows compare (default: as a multiset):
--   ordered          the ORDER BY fixes the full row order: rows compare in sequence
--   ordered_by=2,3   the ORDER BY fixes only the order of these (1-based) columns: rows compare
--                    as a multiset, and the sequence of those columns must match (strings
--                    folded as the collation does: case, trailing spaces, accents)
--   ci               strings compare as the collation does (for GROUP BY / DISTINCT / MIN / MAX
--                    over case variants, where the server may return any of the equal values)

-- category: point
SELECT * FROM users WHERE user_id = 42
SELECT user_id, name, balance FROM users WHERE user_id = 7
SELECT * FROM users WHERE user_id = 100000
SELECT * FROM orders WHERE user_id = 42 ORDER BY placed DESC, order_id -- ordered
SELECT order_id, amount FROM orders WHERE user_id = 13 ORDER BY amount, order_id LIMIT 3 -- ordered
SELECT COUNT(*), SUM(amount), AVG(amount), MIN(placed), MAX(placed) FROM orders WHERE user_id = 42
SELECT status, COUNT(*), SUM(qty) FROM orders WHERE user_id = 77 GROUP BY status
SELECT DISTINCT status FROM orders WHERE user_id = 21
SELECT * FROM users WHERE user_id IN (3, 11, 19, 27) ORDER BY user_id -- ordered
SELECT u.name, o.order_id, o.amount FROM users u JOIN orders o ON o.user_id = u.user_id WHERE u.user_id = 42 ORDER BY o.order_id -- ordered
SELECT u.user_id, COUNT(o.order_id) FROM users u LEFT JOIN orders o ON o.user_id = u.user_id WHERE u.user_id = 10 GROUP BY u.user_id
SELECT o.order_id, p.title FROM orders o JOIN products p ON p.product_id = o.product_id WHERE o.user_id = 5 ORDER BY o.order_id -- ordered
SELECT * FROM orders WHERE user_id = 405 ORDER BY order_id -- ordered
SELECT name FROM users WHERE user_id = 9 AND score > 1000
SELECT user_id, score FROM users WHERE user_id = 8 UNION ALL SELECT user_id, score FROM users WHERE user_id = 16
SELECT COUNT(*) FROM orders WHERE user_id = 3 AND status = 'paid'
SELECT GROUP_CONCAT(order_id ORDER BY order_id) FROM orders WHERE user_id = 61
SELECT o.status, SUM(o.amount) AS total FROM orders o WHERE o.user_id = 99 GROUP BY o.status HAVING total > 0 ORDER BY total DESC, o.status -- ordered
SELECT * FROM users WHERE user_id = 42 OR user_id = 50 ORDER BY user_id -- ordered
SELECT u.user_id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.user_id) AS n FROM users u WHERE u.user_id = 33
SELECT * FROM refunds WHERE user_id = 5
SELECT order_id, ROW_NUMBER() OVER (ORDER BY placed, order_id) AS rn FROM orders WHERE user_id = 44
SELECT MAX(amount) - MIN(amount) FROM orders WHERE user_id = 12
SELECT name, city, last_login FROM users WHERE user_id = 1
SELECT o.* FROM orders o WHERE o.user_id = 2 AND o.placed >= '2022-01-01' ORDER BY o.placed, o.order_id -- ordered

-- category: scatter_plain
SELECT * FROM users
SELECT user_id, name, city FROM users WHERE score > 100
SELECT * FROM orders
SELECT order_id, user_id, amount FROM orders WHERE status = 'returned'
SELECT user_id, name FROM users WHERE city = 'Oslo'
SELECT user_id, name FROM users WHERE name = 'alice'
SELECT user_id, name FROM users WHERE name LIKE 'a%'
SELECT user_id FROM users WHERE name IS NULL
SELECT user_id, name FROM users WHERE name = ''
SELECT user_id, city FROM users WHERE city IS NULL OR city = ''
SELECT order_id, note FROM orders WHERE note = 'gift'
SELECT order_id FROM orders WHERE amount IS NULL
SELECT order_id, amount FROM orders WHERE amount < 0
SELECT * FROM users WHERE user_id IN (1, 2, 3, 4, 5, 6, 7, 8, 9)
SELECT user_id, balance FROM users WHERE user_id BETWEEN 100 AND 130
SELECT user_id, balance * 2 AS double_balance, balance + score AS mixed FROM users
SELECT user_id, UPPER(name), CONCAT(COALESCE(name, '?'), '@', COALESCE(city, '?')) AS label FROM users
SELECT order_id, DATE_FORMAT(placed, '%Y-%m') AS ym, YEAR(placed), DAYOFWEEK(placed) FROM orders
SELECT user_id, CASE WHEN score IS NULL THEN 'none' WHEN score < 0 THEN 'negative' ELSE 'positive' END AS sign FROM users
SELECT user_id, points FROM users WHERE points > 9223372036854775807
SELECT order_id, discount FROM orders WHERE discount > 0.2
SELECT order_id, placed FROM orders WHERE placed = '2022-06-01 12:00:00'
SELECT user_id, code FROM users WHERE code = 'a1'
SELECT * FROM refunds
SELECT * FROM users WHERE 1 = 0
SELECT user_id, rating FROM users WHERE rating BETWEEN -1 AND 1
SELECT order_id, qty * amount AS line_total FROM orders WHERE qty > 15
SELECT user_id, DATEDIFF(last_login, created) AS days FROM users WHERE last_login IS NOT NULL
SELECT user_id, vip FROM users WHERE vip = 1
SELECT order_id, user_id FROM orders WHERE qty = 99
SELECT user_id, IF(vip = 1, balance, 0) AS vip_balance FROM users WHERE city = 'Quito'
SELECT order_id, status + 0 AS status_index, ship_date FROM orders WHERE order_id < 50

-- category: order_by
SELECT user_id, name FROM users ORDER BY user_id -- ordered
SELECT user_id, name FROM users ORDER BY user_id DESC -- ordered
SELECT user_id, score FROM users ORDER BY score, user_id -- ordered
SELECT user_id, score FROM users ORDER BY score DESC, user_id -- ordered
SELECT user_id, score FROM users ORDER BY score -- ordered_by=2
SELECT user_id, name FROM users ORDER BY name, user_id -- ordered
SELECT user_id, name FROM users ORDER BY name DESC, user_id DESC -- ordered
SELECT user_id, name FROM users ORDER BY name -- ordered_by=2
SELECT user_id, balance FROM users ORDER BY balance, user_id -- ordered
SELECT user_id, balance FROM users ORDER BY balance DESC, user_id -- ordered
SELECT user_id, rating FROM users ORDER BY rating, user_id -- ordered
SELECT user_id, rating FROM users ORDER BY rating DESC, user_id -- ordered
SELECT user_id, rating FROM users ORDER BY rating -- ordered_by=2
SELECT user_id, created FROM users ORDER BY created, user_id -- ordered
SELECT user_id, last_login FROM users ORDER BY last_login DESC, user_id -- ordered
SELECT order_id, placed FROM orders ORDER BY placed, order_id -- ordered
SELECT order_id, amount FROM orders ORDER BY amount DESC, order_id -- ordered
SELECT order_id, status FROM orders ORDER BY status, order_id -- ordered
SELECT order_id, status FROM orders ORDER BY status DESC, order_id DESC -- ordered
SELECT user_id, points FROM users ORDER BY points DESC, user_id -- ordered
SELECT user_id, code FROM users ORDER BY code, user_id -- ordered
SELECT user_id, name FROM users ORDER BY name COLLATE utf8mb4_bin, user_id -- ordered
SELECT order_id, discount FROM orders ORDER BY discount, order_id -- ordered
SELECT user_id, city, score FROM users ORDER BY city, score DESC, user_id -- ordered
SELECT user_id, city, score FROM users ORDER BY city DESC, score, user_id DESC -- ordered
SELECT name FROM users ORDER BY score, user_id -- ordered
SELECT order_id FROM orders ORDER BY amount, placed DESC, order_id -- ordered
SELECT user_id, balance - score AS net FROM users ORDER BY net, user_id -- ordered
SELECT user_id, balance * 2 - score FROM users ORDER BY balance * 2 - score DESC, user_id -- ordered
SELECT user_id, name FROM users ORDER BY LENGTH(name), user_id -- ordered
SELECT user_id, score FROM users ORDER BY ABS(score) DESC, user_id -- ordered
SELECT user_id, score FROM users ORDER BY COALESCE(score, 0), user_id -- ordered
SELECT user_id, name, city FROM users ORDER BY 3, 1 -- ordered
SELECT order_id, amount, qty FROM orders ORDER BY 3 DESC, 2, 1 -- ordered
SELECT o.order_id, o.amount AS a FROM orders o ORDER BY a, o.order_id -- ordered
SELECT user_id, name FROM users ORDER BY CASE WHEN city = 'Paris' THEN 0 ELSE 1 END, user_id -- ordered
SELECT order_id, status FROM orders ORDER BY FIELD(status, 'shipped', 'paid', 'new'), order_id -- ordered
SELECT order_id, status FROM orders ORDER BY CAST(status AS CHAR), order_id -- ordered
SELECT user_id, score FROM users ORDER BY CAST(score AS CHAR), user_id -- ordered
SELECT user_id, vip, balance FROM users ORDER BY vip DESC, balance, user_id -- ordered
SELECT user_id, created FROM users ORDER BY YEAR(created) DESC, MONTH(created), user_id -- ordered
SELECT user_id, name FROM users WHERE city = 'Oslo' ORDER BY name, user_id -- ordered
SELECT order_id, amount FROM orders WHERE status = 'returned' ORDER BY amount DESC, order_id -- ordered
SELECT * FROM users WHERE 1 = 0 ORDER BY user_id -- ordered
SELECT order_id, user_id FROM orders ORDER BY user_id, order_id -- ordered
SELECT * FROM orders ORDER BY placed DESC, order_id DESC -- ordered
SELECT order_id, note FROM orders ORDER BY note, order_id -- ordered
SELECT order_id, placed FROM orders ORDER BY DATE(placed) DESC, order_id -- ordered
SELECT user_id AS id, name AS n FROM users ORDER BY n DESC, id -- ordered
SELECT user_id, score FROM users ORDER BY -score, user_id -- ordered
SELECT order_id, amount FROM orders ORDER BY amount IS NULL, amount, order_id -- ordered
SELECT user_id, city FROM users ORDER BY city -- ordered_by=2
SELECT order_id, status, amount FROM orders ORDER BY status, amount DESC -- ordered_by=2,3
SELECT user_id, balance + rating AS mixed FROM users ORDER BY mixed, user_id -- ordered
SELECT user_id, balance, rating FROM users ORDER BY rating DESC, balance, user_id -- ordered
SELECT order_id, ship_date FROM orders ORDER BY ship_date, order_id -- ordered

-- category: limit_offset
SELECT user_id, name FROM users ORDER BY user_id LIMIT 10 -- ordered
SELECT user_id, name FROM users ORDER BY user_id LIMIT 10 OFFSET 195 -- ordered
SELECT user_id FROM users ORDER BY user_id DESC LIMIT 5, 5 -- ordered
SELECT order_id, amount FROM orders ORDER BY amount DESC, order_id LIMIT 20 -- ordered
SELECT order_id, amount FROM orders ORDER BY amount, order_id LIMIT 20 -- ordered
SELECT order_id FROM orders ORDER BY order_id LIMIT 1990, 50 -- ordered
SELECT order_id FROM orders ORDER BY order_id LIMIT 10 OFFSET 5000 -- ordered
SELECT order_id FROM orders ORDER BY order_id LIMIT 0 -- ordered
SELECT user_id, score FROM users ORDER BY score DESC, user_id LIMIT 1 -- ordered
SELECT user_id, name FROM users ORDER BY name, user_id LIMIT 15 -- ordered
SELECT user_id, name FROM users ORDER BY name DESC, user_id LIMIT 15 OFFSET 30 -- ordered
SELECT order_id, placed FROM orders ORDER BY placed DESC, order_id LIMIT 25 -- ordered
SELECT order_id, placed FROM orders ORDER BY placed, order_id LIMIT 10 OFFSET 1000 -- ordered
SELECT user_id, points FROM users ORDER BY points DESC, user_id LIMIT 12 -- ordered
SELECT user_id, rating FROM users ORDER BY rating, user_id LIMIT 10 -- ordered
SELECT user_id, balance FROM users ORDER BY balance DESC, user_id LIMIT 10 OFFSET 10 -- ordered
SELECT order_id, status FROM orders ORDER BY status DESC, order_id LIMIT 30 -- ordered
SELECT name FROM users ORDER BY created DESC, user_id LIMIT 7 -- ordered
SELECT order_id, amount FROM orders WHERE status = 'returned' ORDER BY order_id LIMIT 5 -- ordered
SELECT user_id FROM users WHERE city = 'Nowhere' ORDER BY user_id LIMIT 10 -- ordered
SELECT order_id, qty * amount AS total FROM orders ORDER BY total DESC, order_id LIMIT 10 -- ordered
SELECT * FROM orders ORDER BY order_id LIMIT 3 -- ordered
SELECT user_id, score FROM users WHERE score IS NOT NULL ORDER BY score, user_id LIMIT 50 OFFSET 300 -- ordered
SELECT order_id FROM orders ORDER BY order_id DESC LIMIT 1999, 10 -- ordered
SELECT user_id, code FROM users ORDER BY code DESC, user_id LIMIT 8 -- ordered
SELECT user_id, name FROM users ORDER BY name COLLATE utf8mb4_bin DESC, user_id LIMIT 10 -- ordered
SELECT order_id, discount FROM orders ORDER BY discount DESC, order_id LIMIT 10 -- ordered
SELECT user_id, created FROM users WHERE user_id BETWEEN 50 AND 250 ORDER BY created, user_id LIMIT 10 OFFSET 5 -- ordered
SELECT user_id, score FROM users ORDER BY 2 DESC, 1 LIMIT 10 -- ordered
SELECT user_id FROM users WHERE user_id IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10) ORDER BY user_id DESC LIMIT 3 -- ordered
SELECT user_id, balance FROM users WHERE vip = 1 ORDER BY user_id LIMIT 2, 3 -- ordered
SELECT user_id, name FROM users WHERE user_id IN (1, 2, 3, 4, 5, 6, 7, 8) ORDER BY name, user_id LIMIT 4 -- ordered
SELECT order_id, amount FROM orders ORDER BY amount DESC, order_id LIMIT 1990, 18446744073709551615 -- ordered
SELECT user_id, name, score FROM users ORDER BY score, name, user_id LIMIT 100, 40 -- ordered

-- category: aggregates
SELECT COUNT(*) FROM users
SELECT COUNT(*) FROM orders
SELECT COUNT(name), COUNT(city), COUNT(score), COUNT(rating) FROM users
SELECT SUM(score), MIN(score), MAX(score), AVG(score) FROM users
SELECT SUM(balance), MIN(balance), MAX(balance), AVG(balance) FROM users
SELECT SUM(rating), MIN(rating), MAX(rating), AVG(rating) FROM users
SELECT SUM(amount), AVG(amount), MIN(amount), MAX(amount) FROM orders
SELECT SUM(qty), AVG(qty) FROM orders
SELECT SUM(points), MAX(points), MIN(points), AVG(points) FROM users
SELECT MIN(created), MAX(created), MIN(last_login), MAX(last_login) FROM users
SELECT MIN(placed), MAX(placed), MAX(ship_date) FROM orders
SELECT MIN(name), MAX(name) FROM users -- ci
SELECT MIN(status), MAX(status) FROM orders
SELECT MIN(code), MAX(code) FROM users
SELECT COUNT(DISTINCT city) FROM users
SELECT COUNT(DISTINCT name) FROM users
SELECT COUNT(DISTINCT score) FROM users
SELECT COUNT(DISTINCT user_id) FROM orders
SELECT COUNT(DISTINCT status) FROM orders
SELECT SUM(DISTINCT amount) FROM orders
SELECT SUM(DISTINCT qty), AVG(DISTINCT qty) FROM orders
SELECT COUNT(DISTINCT city, vip) FROM users
SELECT COUNT(*) FROM users WHERE city = 'Nowhere'
SELECT SUM(amount), AVG(amount), MIN(amount), MAX(amount), COUNT(amount) FROM orders WHERE qty > 1000
SELECT COUNT(*), SUM(amount), MAX(reason) FROM refunds
SELECT COUNT(DISTINCT user_id), SUM(DISTINCT amount), AVG(amount) FROM refunds
SELECT COUNT(*) FROM users WHERE city = 'Oslo'
SELECT SUM(amount) FROM orders WHERE status = 'returned'
SELECT COUNT(*), SUM(qty) FROM orders WHERE user_id IN (1, 2, 3)
SELECT COUNT(*) FROM orders WHERE amount IS NULL
SELECT SUM(qty * amount), AVG(qty * amount) FROM orders
SELECT SUM(amount) / COUNT(*) AS mean_with_nulls FROM orders
SELECT MAX(amount) - MIN(amount) AS spread FROM orders
SELECT COUNT(*) * 2, SUM(qty) + 1 FROM orders
SELECT ROUND(AVG(amount), 1) FROM orders
SELECT AVG(rating) FROM users WHERE vip = 1
SELECT SUM(discount), AVG(discount), MAX(discount) FROM orders
SELECT COUNT(*) AS n, SUM(balance) AS total FROM users WHERE score > 50
SELECT STDDEV_POP(score), VAR_SAMP(score) FROM users
SELECT GROUP_CONCAT(DISTINCT status ORDER BY status) FROM orders
SELECT COUNT(*) FROM users HAVING COUNT(*) > 0
SELECT COUNT(*) FROM users HAVING COUNT(*) > 100000
SELECT MAX(user_id), MIN(user_id) FROM orders
SELECT COUNT(note), COUNT(DISTINCT note) FROM orders
SELECT BIT_OR(qty), BIT_XOR(qty) FROM orders
SELECT AVG(DISTINCT score) FROM users
SELECT SUM(amount) FROM orders WHERE user_id BETWEEN 1 AND 50
SELECT COUNT(*) FROM orders WHERE note = 'gift'
SELECT SUM(score) FROM users WHERE score IS NULL
SELECT COUNT(*), MIN(created) FROM users WHERE 1 = 0
SELECT MAX(balance) AS top, MIN(rating) AS low FROM users WHERE city IS NULL
SELECT COUNT(1), COUNT(0), COUNT(NULL) FROM orders
SELECT AVG(score) FROM users WHERE city = 'Oslo'

-- category: group_by
SELECT city, COUNT(*) FROM users GROUP BY city
SELECT city, COUNT(*), SUM(balance), AVG(score) FROM users GROUP BY city
SELECT status, COUNT(*), SUM(amount), AVG(amount), MIN(placed), MAX(placed) FROM orders GROUP BY status
SELECT user_id, COUNT(*), SUM(amount) FROM orders GROUP BY user_id
SELECT COUNT(*) FROM users GROUP BY city
SELECT SUM(amount) FROM orders GROUP BY status
SELECT city, vip, COUNT(*), MAX(balance) FROM users GROUP BY city, vip
SELECT YEAR(placed) AS y, MONTH(placed) AS m, COUNT(*), SUM(qty) FROM orders GROUP BY YEAR(placed), MONTH(placed)
SELECT YEAR(created), COUNT(*) FROM users GROUP BY 1
SELECT score DIV 10 AS bucket, COUNT(*) FROM users GROUP BY bucket
SELECT name, COUNT(*) FROM users GROUP BY name -- ci
SELECT note, COUNT(*) FROM orders GROUP BY note -- ci
SELECT product_id, COUNT(*), SUM(qty), AVG(discount) FROM orders GROUP BY product_id
SELECT score, COUNT(*) FROM users GROUP BY score
SELECT city, COUNT(DISTINCT vip), COUNT(DISTINCT name) FROM users GROUP BY city
SELECT status, SUM(DISTINCT qty) FROM orders GROUP BY status
SELECT city, MIN(name), MAX(name) FROM users GROUP BY city -- ci
SELECT city, COUNT(*) AS n FROM users GROUP BY city HAVING n > 50
SELECT city, COUNT(*) FROM users GROUP BY city HAVING COUNT(*) > 50
SELECT city FROM users GROUP BY city HAVING SUM(balance) > 100000
SELECT city, AVG(score) FROM users GROUP BY city HAVING MAX(score) > 140 AND MIN(score) < -40
SELECT status, COUNT(*) FROM orders GROUP BY status HAVING status <> 'new'
SELECT user_id, SUM(amount) AS total FROM orders GROUP BY user_id HAVING total > 5000
SELECT user_id, COUNT(*) FROM orders GROUP BY user_id HAVING COUNT(*) >= 10
SELECT city, SUM(balance) AS total FROM users GROUP BY city ORDER BY total DESC, city -- ordered
SELECT city, COUNT(*) AS n FROM users GROUP BY city ORDER BY n DESC, city LIMIT 3 -- ordered
SELECT status, SUM(amount) FROM orders GROUP BY status ORDER BY SUM(amount) DESC, status -- ordered
SELECT user_id, SUM(amount) AS total FROM orders GROUP BY user_id ORDER BY total DESC, user_id LIMIT 10 -- ordered
SELECT product_id, SUM(qty) AS units FROM orders GROUP BY product_id ORDER BY units DESC, product_id LIMIT 5 -- ordered
SELECT product_id, COUNT(*) AS n FROM orders GROUP BY product_id ORDER BY n, product_id LIMIT 5 OFFSET 3 -- ordered
SELECT city, COUNT(*) FROM users GROUP BY city ORDER BY city -- ordered
SELECT city, COUNT(*) FROM users GROUP BY city ORDER BY city DESC -- ordered
SELECT status, COUNT(*) FROM orders GROUP BY status ORDER BY status -- ordered
SELECT vip, AVG(balance), AVG(rating) FROM users GROUP BY vip
SELECT city, SUM(rating) FROM users GROUP BY city
SELECT DATE(placed) AS d, COUNT(*) FROM orders GROUP BY DATE(placed) ORDER BY COUNT(*) DESC, d LIMIT 5 -- ordered
SELECT city, COUNT(*) FROM users WHERE city = 'Oslo' GROUP BY city
SELECT city, COUNT(*) FROM users WHERE 1 = 0 GROUP BY city
SELECT reason, COUNT(*), SUM(amount) FROM refunds GROUP BY reason
SELECT user_id % 4 AS m, COUNT(*) FROM users GROUP BY m
SELECT qty, COUNT(*), SUM(amount) FROM orders GROUP BY qty HAVING SUM(amount) IS NOT NULL
SELECT city, GROUP_CONCAT(user_id ORDER BY user_id) FROM users WHERE vip = 1 GROUP BY city
SELECT points > 1000 AS big, COUNT(*), SUM(points) FROM users GROUP BY big
SELECT code, COUNT(*) FROM users GROUP BY code
SELECT LOWER(name) AS lname, COUNT(*) FROM users GROUP BY LOWER(name) -- ci
SELECT city, COUNT(*) FROM users GROUP BY city WITH ROLLUP
SELECT status, AVG(amount) AS a FROM orders GROUP BY status HAVING a > 100 ORDER BY a DESC, status -- ordered
SELECT city, MAX(last_login) FROM users GROUP BY city HAVING MAX(last_login) >= '2023-01-01'
SELECT user_id, MIN(placed), MAX(placed) FROM orders WHERE status = 'returned' GROUP BY user_id ORDER BY user_id -- ordered
SELECT vip, city, COUNT(*) FROM users GROUP BY vip, city ORDER BY vip DESC, COUNT(*) DESC, city -- ordered
SELECT status, COUNT(*) AS n, SUM(amount) AS total FROM orders WHERE placed >= '2022-01-01' GROUP BY status ORDER BY n DESC, status LIMIT 2 -- ordered
SELECT city, AVG(balance) AS avg_balance FROM users GROUP BY city HAVING COUNT(*) > 20 ORDER BY avg_balance, city -- ordered
SELECT city FROM users GROUP BY city ORDER BY COUNT(*) DESC, city -- ordered
SELECT status FROM orders GROUP BY status ORDER BY MAX(amount) DESC, status -- ordered
SELECT user_id, SUM(qty) FROM orders WHERE user_id IN (1, 2, 3, 4) GROUP BY user_id ORDER BY user_id -- ordered

-- category: distinct
SELECT DISTINCT city FROM users
SELECT DISTINCT status FROM orders
SELECT DISTINCT city, vip FROM users
SELECT DISTINCT name FROM users -- ci
SELECT DISTINCT score FROM users ORDER BY score -- ordered
SELECT DISTINCT city FROM users ORDER BY city LIMIT 3 -- ordered
SELECT DISTINCT YEAR(created) AS y FROM users ORDER BY y DESC -- ordered
SELECT DISTINCT user_id % 3 FROM users
SELECT DISTINCT amount FROM orders WHERE amount < 20
SELECT DISTINCT user_id FROM orders
SELECT DISTINCT product_id FROM orders ORDER BY product_id -- ordered
SELECT DISTINCT note FROM orders -- ci
SELECT DISTINCT code FROM users
SELECT DISTINCT discount FROM orders
SELECT DISTINCT rating FROM users WHERE rating < 0
SELECT DISTINCT vip FROM users WHERE city = 'Oslo'
SELECT DISTINCT status, qty FROM orders WHERE qty > 18 ORDER BY status, qty -- ordered
SELECT DISTINCT DATE(placed) FROM orders ORDER BY 1 DESC LIMIT 10 -- ordered
SELECT DISTINCT city FROM users WHERE 1 = 0
SELECT DISTINCT points FROM users ORDER BY points DESC LIMIT 5 -- ordered
SELECT DISTINCT LOWER(TRIM(name)) FROM users ORDER BY 1 -- ordered ci
SELECT DISTINCT status FROM orders ORDER BY status DESC -- ordered

-- category: joins
SELECT u.user_id, u.name, o.order_id, o.amount FROM users u JOIN orders o ON o.user_id = u.user_id
SELECT u.user_id, o.order_id FROM users u LEFT JOIN orders o ON o.user_id = u.user_id WHERE o.order_id IS NULL
SELECT o.order_id, u.name FROM orders o LEFT JOIN users u ON u.user_id = o.user_id WHERE u.user_id IS NULL
SELECT u.city, COUNT(*), SUM(o.amount) FROM users u JOIN orders o ON o.user_id = u.user_id GROUP BY u.city
SELECT u.user_id, u.name, SUM(o.amount) AS spent FROM users u JOIN orders o ON o.user_id = u.user_id GROUP BY u.user_id, u.name ORDER BY spent DESC, u.user_id LIMIT 10 -- ordered
SELECT o.order_id, p.title, p.price * o.qty AS list_total FROM orders o JOIN products p ON p.product_id = o.product_id
SELECT p.category, COUNT(*), SUM(o.qty) FROM orders o JOIN products p ON p.product_id = o.product_id GROUP BY p.category
SELECT p.title, SUM(o.qty) AS units FROM orders o JOIN products p ON p.product_id = o.product_id GROUP BY p.title ORDER BY units DESC, p.title LIMIT 5 -- ordered
SELECT o.order_id FROM orders o LEFT JOIN products p ON p.product_id = o.product_id WHERE p.product_id IS NULL
SELECT u.name, o.order_id, p.title FROM users u JOIN orders o ON o.user_id = u.user_id JOIN products p ON p.product_id = o.product_id WHERE u.vip = 1 ORDER BY o.order_id -- ordered
SELECT u.user_id, r.refund_id FROM users u JOIN refunds r ON r.user_id = u.user_id
SELECT u.user_id, COUNT(r.refund_id) FROM users u LEFT JOIN refunds r ON r.user_id = u.user_id GROUP BY u.user_id
SELECT a.user_id, b.user_id FROM users a JOIN users b ON a.city = b.city AND a.user_id < b.user_id WHERE a.city = 'Paris'
SELECT o.order_id, u.name FROM orders o JOIN users u ON u.user_id = o.order_id WHERE o.order_id < 100
SELECT u.user_id, g.region FROM users u JOIN regions g ON g.city = u.city
SELECT DISTINCT p.category FROM orders o JOIN products p ON p.product_id = o.product_id
SELECT u.user_id, o.order_id FROM users u JOIN orders o ON o.user_id = u.user_id AND o.status = 'returned' ORDER BY u.user_id, o.order_id -- ordered
SELECT u.user_id, o.order_id FROM users u, orders o WHERE u.user_id = o.user_id AND o.qty = 99
SELECT user_id, u.name, o.order_id FROM users u JOIN orders o USING (user_id) WHERE o.amount > 1900
SELECT COUNT(*) FROM users u JOIN orders o ON o.user_id = u.user_id
SELECT u.city, AVG(o.amount) AS avg_amount FROM users u JOIN orders o ON o.user_id = u.user_id GROUP BY u.city HAVING COUNT(*) > 100 ORDER BY avg_amount DESC, u.city -- ordered
SELECT o.status, p.category, COUNT(*) FROM orders o JOIN products p ON p.product_id = o.product_id GROUP BY o.status, p.category
SELECT u.user_id, o.order_id FROM users u RIGHT JOIN orders o ON o.user_id = u.user_id WHERE o.order_id <= 40
SELECT u.user_id, o1.order_id, o2.order_id FROM users u JOIN orders o1 ON o1.user_id = u.user_id JOIN orders o2 ON o2.user_id = u.user_id AND o2.order_id > o1.order_id WHERE u.user_id < 20
SELECT o1.order_id, o2.order_id FROM orders o1 JOIN orders o2 ON o1.placed = o2.placed AND o1.order_id < o2.order_id
SELECT p.product_id, p.title, COUNT(o.order_id) FROM products p LEFT JOIN orders o ON o.product_id = p.product_id GROUP BY p.product_id, p.title
SELECT p.title FROM products p LEFT JOIN orders o ON o.product_id = p.product_id AND o.qty = 99 WHERE o.order_id IS NULL
SELECT p.title FROM products p LEFT JOIN orders o ON o.product_id = p.product_id GROUP BY p.title HAVING COUNT(o.order_id) = 0
SELECT COUNT(*) FROM products p LEFT JOIN orders o ON o.product_id = p.product_id AND o.qty > 18
SELECT u.name, p.title FROM users u JOIN orders o ON o.user_id = u.user_id JOIN products p ON p.product_id = o.product_id WHERE u.user_id = 42 ORDER BY o.order_id -- ordered
SELECT u.user_id, o.order_id FROM users u CROSS JOIN orders o WHERE u.user_id = 1 AND o.order_id = 1
SELECT u.user_id, COUNT(*) AS n FROM users u JOIN orders o ON o.user_id = u.user_id WHERE o.status IN ('paid', 'shipped') GROUP BY u.user_id HAVING n > 5 ORDER BY n DESC, u.user_id LIMIT 10 -- ordered
SELECT o.order_id, u.city FROM orders o STRAIGHT_JOIN users u ON u.user_id = o.user_id WHERE o.discount = 0.5
SELECT u.user_id, o.order_id FROM users u JOIN orders o ON o.user_id = u.user_id WHERE u.city = 'Oslo' AND o.amount > 1000 ORDER BY o.order_id -- ordered

-- category: subqueries
SELECT user_id, name FROM users WHERE user_id IN (SELECT user_id FROM orders WHERE amount > 1900)
SELECT user_id FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.user_id AND o.status = 'returned')
SELECT user_id FROM users u WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.user_id)
SELECT order_id FROM orders WHERE user_id NOT IN (SELECT user_id FROM users)
SELECT user_id, score FROM users WHERE score > (SELECT AVG(score) FROM users)
SELECT order_id, amount FROM orders WHERE amount = (SELECT MAX(amount) FROM orders)
SELECT user_id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.user_id) AS n FROM users u
SELECT u.user_id, (SELECT MAX(o.placed) FROM orders o WHERE o.user_id = u.user_id) AS last_order FROM users u WHERE u.vip = 1
SELECT city, n FROM (SELECT city, COUNT(*) AS n FROM users GROUP BY city) t WHERE n > 10
SELECT t.user_id, t.total FROM (SELECT user_id, SUM(amount) AS total FROM orders GROUP BY user_id) t WHERE t.total > 3000
SELECT COUNT(*) FROM (SELECT DISTINCT city FROM users) t
SELECT MAX(n) FROM (SELECT user_id, COUNT(*) AS n FROM orders GROUP BY user_id) t
SELECT AVG(total) FROM (SELECT user_id, SUM(amount) AS total FROM orders GROUP BY user_id) t
SELECT * FROM (SELECT user_id, name FROM users WHERE score > 100) AS t ORDER BY user_id -- ordered
SELECT product_id, title FROM products WHERE product_id IN (SELECT product_id FROM orders WHERE qty = 99)
SELECT product_id, title FROM products WHERE product_id IN (SELECT product_id FROM orders WHERE amount > 1900)
SELECT COUNT(*) FROM products WHERE product_id NOT IN (SELECT product_id FROM orders WHERE status = 'returned')
SELECT title FROM products p WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.product_id = p.product_id AND o.status = 'returned')
SELECT order_id FROM orders WHERE product_id IN (SELECT product_id FROM products WHERE category = 'tools')
SELECT order_id, amount FROM orders WHERE amount > ALL (SELECT amount FROM orders WHERE status = 'returned' AND amount IS NOT NULL)
SELECT user_id FROM users WHERE city IN (SELECT city FROM regions WHERE population > 5000000)
SELECT user_id, balance FROM users WHERE balance > (SELECT AVG(balance) FROM users u2 WHERE u2.city = users.city)
SELECT o.order_id FROM orders o WHERE o.amount > (SELECT AVG(o2.amount) FROM orders o2 WHERE o2.user_id = o.user_id)
SELECT COUNT(*) FROM users WHERE user_id IN (SELECT user_id FROM orders)
SELECT (SELECT COUNT(*) FROM users) AS users_n, (SELECT COUNT(*) FROM orders) AS orders_n
SELECT user_id FROM users WHERE user_id IN (SELECT user_id FROM users WHERE city = 'Oslo') ORDER BY user_id -- ordered
WITH big AS (SELECT user_id, SUM(amount) AS total FROM orders GROUP BY user_id) SELECT user_id, total FROM big WHERE total > 4000
WITH c AS (SELECT city, COUNT(*) AS n FROM users GROUP BY city) SELECT city, n FROM c ORDER BY n DESC, city LIMIT 3 -- ordered
SELECT user_id FROM users WHERE score = (SELECT MAX(score) FROM users) ORDER BY user_id -- ordered
SELECT user_id, name FROM users WHERE user_id IN (SELECT user_id FROM orders GROUP BY user_id HAVING COUNT(*) > 8)

-- category: union
SELECT user_id FROM users WHERE city = 'Oslo' UNION SELECT user_id FROM orders WHERE qty = 99
SELECT user_id FROM users WHERE city = 'Oslo' UNION ALL SELECT user_id FROM orders WHERE qty = 99
SELECT city FROM users UNION SELECT city FROM regions
SELECT city FROM users WHERE vip = 1 UNION SELECT city FROM users WHERE score < -45
SELECT status FROM orders UNION SELECT 'paid'
SELECT user_id, 'user' AS kind FROM users WHERE score > 140 UNION ALL SELECT user_id, 'order' FROM orders WHERE amount > 1990
(SELECT user_id FROM users ORDER BY user_id LIMIT 3) UNION ALL (SELECT user_id FROM users ORDER BY user_id DESC LIMIT 3)
SELECT user_id FROM users WHERE user_id < 10 UNION SELECT user_id FROM users WHERE user_id < 20 ORDER BY user_id -- ordered
SELECT user_id FROM users WHERE user_id < 10 UNION ALL SELECT user_id FROM users WHERE user_id < 20 ORDER BY user_id DESC LIMIT 5 -- ordered
SELECT name FROM users WHERE city = 'Paris' UNION SELECT name FROM users WHERE city = 'Berlin' -- ci
SELECT title FROM products WHERE price > 50 UNION SELECT title FROM products WHERE weight < 1
SELECT COUNT(*) FROM users UNION ALL SELECT COUNT(*) FROM orders
SELECT product_id FROM products UNION SELECT product_id FROM orders
SELECT user_id, amount FROM orders WHERE user_id = 5 UNION ALL SELECT user_id, amount FROM orders WHERE user_id = 6
SELECT user_id FROM users WHERE city = 'Nowhere' UNION SELECT user_id FROM orders WHERE 1 = 0
SELECT amount FROM orders WHERE status = 'returned' UNION SELECT amount FROM orders WHERE status = 'cancelled' ORDER BY amount LIMIT 5 -- ordered
SELECT user_id, score FROM users WHERE user_id = 3 UNION ALL SELECT order_id, amount FROM orders WHERE user_id = 6
SELECT qty FROM orders WHERE user_id = 5 UNION ALL SELECT balance FROM users WHERE user_id = 6
SELECT created FROM users WHERE user_id = 7 UNION SELECT placed FROM orders WHERE user_id = 9
SELECT name FROM users WHERE user_id = 2 UNION ALL SELECT score FROM users WHERE user_id = 5 UNION ALL SELECT rating FROM users WHERE user_id = 6
SELECT user_id, NULL AS r FROM users WHERE user_id = 1 UNION ALL SELECT user_id, rating FROM users WHERE user_id = 2
SELECT code FROM users WHERE user_id = 4 UNION SELECT name FROM users WHERE user_id = 5
SELECT status FROM orders WHERE user_id = 3 UNION SELECT city FROM users WHERE user_id = 10 -- ci
SELECT user_id FROM users WHERE score > 100 UNION SELECT user_id FROM orders WHERE qty > 8 ORDER BY 1 DESC LIMIT 4 OFFSET 3 -- ordered
SELECT user_id, 'a' AS t FROM users WHERE user_id = 1 UNION ALL SELECT user_id, 'b' FROM users WHERE user_id = 2 UNION ALL SELECT user_id, 'c' FROM users WHERE user_id = 3 ORDER BY t DESC -- ordered
SELECT user_id AS id, name FROM users WHERE score > 120 UNION SELECT order_id, note FROM orders WHERE qty > 9 ORDER BY id, name LIMIT 10 -- ordered
SELECT points FROM users WHERE vip = 1 UNION ALL SELECT qty FROM orders WHERE qty < 2
SELECT user_id, discount FROM orders WHERE qty = 7 UNION SELECT user_id, rating FROM users WHERE vip = 1
SELECT title, price FROM products WHERE price > 90 UNION ALL SELECT note, amount FROM orders WHERE amount > 1995
SELECT user_id FROM orders WHERE user_id = 5 UNION SELECT user_id FROM orders WHERE user_id = 6 UNION SELECT user_id FROM users WHERE user_id = 7 ORDER BY user_id -- ordered

-- category: intersect_except
SELECT user_id FROM users WHERE vip = 1 INTERSECT SELECT user_id FROM orders WHERE qty > 5
SELECT user_id FROM users EXCEPT SELECT user_id FROM orders
SELECT city FROM users WHERE vip = 1 INTERSECT SELECT city FROM users WHERE score < 0 -- ci
SELECT user_id FROM orders WHERE qty > 3 INTERSECT ALL SELECT user_id FROM orders WHERE amount > 500
SELECT user_id FROM orders WHERE qty > 3 EXCEPT ALL SELECT user_id FROM orders WHERE amount > 1500
SELECT user_id, score FROM users WHERE user_id = 3 INTERSECT SELECT user_id, qty FROM orders WHERE user_id = 3
SELECT product_id FROM orders EXCEPT SELECT product_id FROM products WHERE price > 50 ORDER BY product_id -- ordered
SELECT user_id FROM users WHERE score > 50 INTERSECT SELECT user_id FROM orders INTERSECT SELECT user_id FROM users WHERE vip = 0 ORDER BY 1 DESC LIMIT 5 OFFSET 2 -- ordered
SELECT city, vip FROM users EXCEPT SELECT city, 1 FROM users WHERE score > 100 -- ci
SELECT user_id, amount FROM orders WHERE user_id < 20 EXCEPT SELECT user_id, amount FROM orders WHERE amount IS NULL OR amount > 1000
SELECT name FROM users WHERE user_id = 1 INTERSECT SELECT name FROM users WHERE user_id = 2
SELECT rating FROM users WHERE user_id < 30 INTERSECT SELECT rating FROM users WHERE user_id > 10

-- category: group_concat
-- GROUP_CONCAT merged from its elements (issue 22): each orders its elements completely, or
-- has one element per group.
SELECT user_id, GROUP_CONCAT(order_id ORDER BY order_id) FROM orders GROUP BY user_id
SELECT GROUP_CONCAT(order_id ORDER BY amount DESC, order_id SEPARATOR '; ') FROM orders WHERE user_id IN (8, 9)
SELECT qty, GROUP_CONCAT(DISTINCT product_id ORDER BY product_id DESC SEPARATOR '/') FROM orders GROUP BY qty
SELECT user_id, GROUP_CONCAT(note, ':', qty ORDER BY placed DESC, order_id LIMIT 2) FROM orders WHERE user_id < 20 GROUP BY user_id
SELECT user_id, COUNT(*), GROUP_CONCAT(amount ORDER BY order_id) FROM orders GROUP BY user_id HAVING COUNT(*) > 5 ORDER BY user_id -- ordered
SELECT GROUP_CONCAT(DISTINCT vip ORDER BY vip), GROUP_CONCAT(user_id ORDER BY user_id DESC LIMIT 5) FROM users
SELECT user_id, GROUP_CONCAT(name) FROM users GROUP BY user_id ORDER BY user_id LIMIT 10 -- ordered
SELECT GROUP_CONCAT(order_id ORDER BY order_id) FROM orders WHERE amount < 0
SELECT GROUP_CONCAT(status ORDER BY status) FROM orders WHERE user_id IN (8, 9)

-- category: window
SELECT order_id, user_id, SUM(amount) OVER (PARTITION BY user_id) AS user_total FROM orders
SELECT order_id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY placed, order_id) AS rn FROM orders
SELECT order_id, ROW_NUMBER() OVER (ORDER BY order_id) AS rn FROM orders
SELECT user_id, RANK() OVER (ORDER BY score DESC) AS r FROM users
SELECT user_id, city, COUNT(*) OVER (PARTITION BY city) AS n FROM users
SELECT order_id, amount, AVG(amount) OVER (PARTITION BY user_id) AS user_avg FROM orders WHERE user_id < 50

-- category: unsharded
SELECT * FROM products
SELECT * FROM products ORDER BY price DESC, product_id -- ordered
SELECT category, COUNT(*), AVG(price) FROM products GROUP BY category
SELECT COUNT(*), SUM(weight) FROM products
SELECT * FROM regions ORDER BY population DESC -- ordered
SELECT region, SUM(population) FROM regions GROUP BY region
SELECT DISTINCT category FROM products
SELECT title FROM products ORDER BY title LIMIT 5 -- ordered
SELECT COUNT(*) FROM products p CROSS JOIN regions g
SELECT 1 + 1, 'x', NULL, 2.50, 1e3
SELECT * FROM products WHERE product_id = 7
SELECT MAX(price), MIN(weight) FROM products WHERE category IS NULL

-- category: key_lists
-- A literal key list that lands on several tables of one data source (users 8 and 9: one data
-- source, two tables in the mod layouts), prepared without parameters, and the same shapes with
-- LIMIT, OFFSET and HAVING values bound as parameters (protocol `params`).
SELECT COUNT(*) FROM orders WHERE user_id IN (8, 9)
SELECT user_id, COUNT(*), SUM(amount) FROM orders WHERE user_id IN (8, 9) GROUP BY user_id
SELECT DISTINCT status FROM orders WHERE user_id IN (8, 9)
SELECT order_id, user_id FROM orders WHERE user_id IN (8, 9) ORDER BY order_id LIMIT 5 -- ordered
SELECT order_id FROM orders WHERE user_id IN (8, 9, 40, 41) ORDER BY order_id DESC LIMIT 3 OFFSET 2 -- ordered
SELECT order_id FROM orders WHERE user_id IN (8, 9, 40, 41) ORDER BY order_id LIMIT 2, 4 -- ordered
SELECT user_id, COUNT(*) FROM orders WHERE user_id IN (8, 9, 40, 41) GROUP BY user_id HAVING COUNT(*) > 4
SELECT MIN(amount), MAX(amount), AVG(qty) FROM orders WHERE user_id IN (8, 9)
SELECT user_id, COUNT(*) FROM orders GROUP BY user_id HAVING COUNT(*) >= 9 ORDER BY user_id LIMIT 4 -- ordered
SELECT COUNT(DISTINCT user_id) FROM orders WHERE user_id BETWEEN 8 AND 12

-- category: locks_and_show
-- LOCK IN SHARE MODE (taken off before parsing and printed back); SHOW through the logical
-- view in every protocol.
SELECT user_id, name FROM users WHERE user_id = 5 LOCK IN SHARE MODE
SELECT COUNT(*) FROM orders WHERE user_id IN (8, 9) LOCK IN SHARE MODE
SELECT order_id FROM orders ORDER BY order_id LIMIT 3 LOCK IN SHARE MODE -- ordered
SELECT order_id FROM orders WHERE user_id = 8 FOR UPDATE
SHOW COLUMNS FROM orders
DESCRIBE users

-- category: errors
SELECT no_such_column FROM users ORDER BY user_id
SELECT user_id FROM no_such_table
SELECT COUNT(*) FROM users GROUP BY no_such_column
SELECT user_id FROM users ORDER BY 99
SELECT city, COUNT(*) FROM users GROUP BY city HAVING no_such_alias > 1
SELECT user_id FROM users UNION SELECT user_id, name FROM users
