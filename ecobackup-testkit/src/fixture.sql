-- The ecobackup demo shop: a small multi-tenant e-commerce database.
--
-- Run by ecobackup (`load_shop`) inside one transaction, after `SET LOCAL ecobackup.scale = N`.
-- To load it by hand into an empty database:
--   psql -v ON_ERROR_STOP=1 -c 'BEGIN' -c 'SET LOCAL ecobackup.scale = 1' -f fixture.sql -c 'COMMIT'
--
-- Per unit of scale: 2 tenants, 250 products, 1500 customers, 7000 orders, 21000 order items,
-- about 6200 payments and 6000 invoices: about 9 MB of tables and indexes. Values are drawn
-- from random() after setseed, or computed from ids, so two loads of the same scale within the
-- same clock hour are identical; timestamps are relative to the start of the current hour,
-- spanning the last 90 days.

SELECT setseed(0.4242);

CREATE TEMPORARY TABLE fixture_params ON COMMIT DROP AS
SELECT greatest(current_setting('ecobackup.scale')::int, 1) AS scale,
       date_trunc('hour', now()) AS anchor,
       2 * greatest(current_setting('ecobackup.scale')::int, 1) AS tenants,
       250 * greatest(current_setting('ecobackup.scale')::int, 1) AS products,
       1500 * greatest(current_setting('ecobackup.scale')::int, 1) AS customers,
       7000 * greatest(current_setting('ecobackup.scale')::int, 1) AS orders;

-- Types ------------------------------------------------------------------------------------

CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded');

-- Tables (constraints and indexes are added after the data: bulk loads are faster) ----------

CREATE TABLE tenants (
    id         integer     NOT NULL,
    slug       text        NOT NULL,
    name       text        NOT NULL,
    plan       text        NOT NULL CHECK (plan IN ('free', 'pro', 'enterprise')),
    settings   jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL
);
COMMENT ON TABLE tenants IS 'Shops hosted on the platform; every other row belongs to one.';

CREATE TABLE products (
    id        bigint        NOT NULL,
    tenant_id integer       NOT NULL,
    sku       text          NOT NULL,
    name      text          NOT NULL,
    price     numeric(10,2) NOT NULL CHECK (price >= 0),
    tags      text[]        NOT NULL DEFAULT '{}',
    active    boolean       NOT NULL DEFAULT true
);

CREATE TABLE customers (
    id         bigint      NOT NULL,
    tenant_id  integer     NOT NULL,
    email      text        NOT NULL,
    full_name  text        NOT NULL,
    country    char(2)     NOT NULL,
    marketing  boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL
);

CREATE TABLE orders (
    id          bigint       NOT NULL,
    tenant_id   integer      NOT NULL,
    customer_id bigint       NOT NULL,
    status      order_status NOT NULL,
    details     jsonb        NOT NULL,
    created_at  timestamptz  NOT NULL
);
COMMENT ON COLUMN orders.details IS 'Channel, shipping address, discounts and tracking, as sent by the storefront.';

CREATE TABLE order_items (
    order_id   bigint        NOT NULL,
    line_no    integer       NOT NULL,
    product_id bigint        NOT NULL,
    quantity   integer       NOT NULL CHECK (quantity > 0),
    unit_price numeric(10,2) NOT NULL
);

CREATE TABLE payments (
    id         bigint GENERATED ALWAYS AS IDENTITY,
    order_id   bigint        NOT NULL,
    amount     numeric(12,2) NOT NULL,
    method     text          NOT NULL,
    card_token bytea         NOT NULL,
    paid_at    timestamptz   NOT NULL
);
COMMENT ON COLUMN payments.card_token IS 'Card data encrypted by the payment provider (random bytes here).';

CREATE SEQUENCE invoice_number_seq START WITH 100001;

CREATE TABLE invoices (
    number    bigint        NOT NULL DEFAULT nextval('invoice_number_seq'),
    order_id  bigint        NOT NULL,
    issued_at timestamptz   NOT NULL,
    total     numeric(12,2) NOT NULL
);
ALTER SEQUENCE invoice_number_seq OWNED BY invoices.number;

-- Data --------------------------------------------------------------------------------------

INSERT INTO tenants (id, slug, name, plan, settings, created_at)
SELECT i,
       'shop-' || i,
       (ARRAY['Nordic', 'Urban', 'Green', 'Blue', 'Happy', 'Alpine', 'Coastal', 'Golden'])[1 + (i - 1) % 8]
           || ' ' || (ARRAY['Outfitters', 'Goods', 'Market', 'Supply', 'Crafts'])[1 + (i - 1) % 5]
           || CASE WHEN i > 40 THEN ' ' || i ELSE '' END,
       (ARRAY['free', 'pro', 'pro', 'enterprise'])[1 + (i - 1) % 4],
       jsonb_build_object('currency', (ARRAY['EUR', 'USD', 'GBP', 'CHF'])[1 + (i - 1) % 4],
                          'tax_included', i % 2 = 0,
                          'languages', to_jsonb((ARRAY['en', 'de', 'fr', 'es'])[1:1 + i % 3])),
       p.anchor - make_interval(days => 400 + i)
FROM fixture_params p, generate_series(1, p.tenants) AS i;

INSERT INTO products (id, tenant_id, sku, name, price, tags, active)
SELECT s.i,
       1 + (s.i - 1) % s.tenants,
       'SKU-' || lpad(s.i::text, 7, '0'),
       (ARRAY['Classic', 'Organic', 'Vintage', 'Compact', 'Deluxe', 'Everyday', 'Travel', 'Smart'])[1 + floor(s.r1 * 8)::int]
           || ' ' || (ARRAY['Backpack', 'Mug', 'Lamp', 'Jacket', 'Notebook', 'Bottle', 'Chair', 'Headphones', 'Scarf', 'Tent'])[1 + floor(s.r2 * 10)::int],
       round((2 + s.r3 * 248)::numeric, 2),
       (ARRAY['new', 'sale', 'eco', 'bestseller'])[1:floor(s.r4 * 4)::int],
       s.r5 > 0.05
FROM (SELECT i, p.tenants, random() AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5
      FROM fixture_params p, generate_series(1, p.products) AS i) AS s;

INSERT INTO customers (id, tenant_id, email, full_name, country, marketing, created_at)
SELECT s.i,
       1 + (s.i - 1) % s.tenants,
       lower(s.first_name) || '.' || lower(s.last_name) || '.' || s.i || '@example.' || (ARRAY['com', 'org', 'net', 'de', 'fr'])[1 + s.i % 5],
       s.first_name || ' ' || s.last_name,
       (ARRAY['DE', 'FR', 'NL', 'GB', 'US', 'ES', 'IT', 'SE', 'PL', 'CH'])[1 + floor(s.r1 * 10)::int],
       s.r2 < 0.3,
       s.anchor - make_interval(secs => s.r3 * 86400 * 365)
FROM (SELECT i, p.tenants, p.anchor,
             (ARRAY['Anna', 'Ben', 'Chloé', 'David', 'Elif', 'Finn', 'Greta', 'Hugo', 'Ines', 'Jonas', 'Kaito', 'Lena', 'Malik', 'Nora', 'Oskar', 'Priya'])[1 + floor(random() * 16)::int] AS first_name,
             (ARRAY['Müller', 'Martin', 'de Vries', 'Smith', 'García', 'Rossi', 'Andersson', 'Nowak', 'Dubois', 'Schmidt', 'Yılmaz', 'Tanaka'])[1 + floor(random() * 12)::int] AS last_name,
             random() AS r1, random() AS r2, random() AS r3
      FROM fixture_params p, generate_series(1, p.customers) AS i) AS s;

-- Orders: ids increase with time; the newest are from the last hour.
INSERT INTO orders (id, tenant_id, customer_id, status, details, created_at)
SELECT s.i,
       1 + (s.customer_id - 1) % s.tenants,
       s.customer_id,
       (CASE WHEN s.r_status < 0.04 THEN 'cancelled'
             WHEN s.r_status < 0.07 THEN 'refunded'
             WHEN s.r_status < 0.15 THEN 'pending'
             WHEN s.r_status < 0.30 THEN 'paid'
             WHEN s.r_status < 0.50 THEN 'shipped'
             ELSE 'delivered' END)::order_status,
       jsonb_build_object(
           'channel', (ARRAY['web', 'ios', 'android', 'marketplace', 'phone'])[1 + floor(s.r1 * 5)::int],
           'currency', (ARRAY['EUR', 'USD', 'GBP', 'CHF'])[1 + (s.customer_id % 4)::int],
           'shipping', jsonb_build_object(
               'method', (ARRAY['standard', 'express', 'pickup', 'same-day'])[1 + floor(s.r2 * 4)::int],
               'address', jsonb_build_object(
                   'street', (1 + floor(s.r3 * 250))::int || ' ' || (ARRAY['Main Street', 'Hauptstraße', 'Rue de la Paix', 'Kerkstraat', 'Via Roma', 'Storgatan'])[1 + floor(s.r4 * 6)::int],
                   'city', (ARRAY['Berlin', 'Paris', 'Amsterdam', 'London', 'New York', 'Madrid', 'Milano', 'Stockholm', 'Kraków', 'Zürich'])[1 + floor(s.r5 * 10)::int],
                   'postcode', lpad(floor(s.r6 * 99999)::int::text, 5, '0')),
               'tracking', CASE WHEN s.r_status >= 0.30 THEN 'TRK' || upper(substr(md5(s.i::text), 1, 12)) END),
           'discounts', CASE WHEN s.r7 < 0.3
                             THEN jsonb_build_array(jsonb_build_object('code', 'SAVE' || (5 * (1 + floor(s.r8 * 4)))::int, 'percent', (5 * (1 + floor(s.r8 * 4)))::int))
                             ELSE '[]'::jsonb END,
           'gift', s.r9 < 0.05,
           'note', CASE WHEN s.r9 < 0.15 THEN (ARRAY['Please leave at the door', 'Ring twice', 'Gift wrap, no invoice in the parcel', 'Call before delivery'])[1 + floor(s.r10 * 4)::int] END,
           'risk_score', round(s.r10::numeric, 3)),
       s.anchor - make_interval(secs => (s.orders - s.i)::float8 / s.orders * 86400 * 90 + s.r11 * 600)
FROM (SELECT i, p.tenants, p.orders, p.anchor,
             1 + floor(random() * p.customers)::bigint AS customer_id,
             random() AS r_status, random() AS r1, random() AS r2, random() AS r3, random() AS r4,
             random() AS r5, random() AS r6, random() AS r7, random() AS r8, random() AS r9,
             random() AS r10, random() AS r11
      FROM fixture_params p, generate_series(1, p.orders) AS i) AS s;

-- One to five items per order, from the order's tenant (computed from ids: no random() here,
-- so the join order cannot change the data).
INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price)
SELECT o.id, l.line_no, pr.id, 1 + ((o.id * 7 + l.line_no * 3) % 4)::int, pr.price
FROM orders o
CROSS JOIN fixture_params p
CROSS JOIN LATERAL (
    SELECT n AS line_no,
           o.tenant_id + p.tenants * ((o.id * 31 + n * 17) % (p.products / p.tenants)) AS product_id
    FROM generate_series(1, 1 + ((o.id * 2654435761) % 5)::int) AS n) AS l
JOIN products pr ON pr.id = l.product_id;

INSERT INTO payments (order_id, amount, method, card_token, paid_at)
SELECT o.id,
       t.total,
       (ARRAY['card', 'card', 'card', 'paypal', 'sepa', 'klarna'])[1 + (o.id % 6)::int],
       decode(md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text)
              || md5(random()::text) || md5(random()::text), 'hex'),
       o.created_at + make_interval(secs => 5 + random() * 300)
FROM orders o
JOIN (SELECT order_id, sum(quantity * unit_price) AS total FROM order_items GROUP BY order_id) AS t
  ON t.order_id = o.id
WHERE o.status IN ('paid', 'shipped', 'delivered', 'refunded')
ORDER BY o.id;

INSERT INTO invoices (order_id, issued_at, total)
SELECT p.order_id, p.paid_at + interval '1 minute', p.amount
FROM payments p
JOIN orders o ON o.id = p.order_id
WHERE o.status <> 'refunded'
ORDER BY p.order_id;

-- Keys and indexes ----------------------------------------------------------------------------

ALTER TABLE tenants ADD PRIMARY KEY (id), ADD UNIQUE (slug);
ALTER TABLE products ADD PRIMARY KEY (id), ADD UNIQUE (tenant_id, sku);
ALTER TABLE customers ADD PRIMARY KEY (id), ADD UNIQUE (tenant_id, email);
ALTER TABLE orders ADD PRIMARY KEY (id);
ALTER TABLE order_items ADD PRIMARY KEY (order_id, line_no);
ALTER TABLE payments ADD PRIMARY KEY (id);
ALTER TABLE invoices ADD PRIMARY KEY (number), ADD UNIQUE (order_id);

CREATE INDEX customers_email_lower_idx ON customers (lower(email));
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE INDEX orders_tenant_created_at_idx ON orders (tenant_id, created_at);
CREATE INDEX orders_details_idx ON orders USING gin (details jsonb_path_ops);
CREATE INDEX order_items_product_id_idx ON order_items (product_id);
CREATE INDEX payments_order_id_idx ON payments (order_id);
CREATE INDEX payments_card_paid_at_idx ON payments (paid_at) WHERE method = 'card';

ALTER TABLE products ADD FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE customers ADD FOREIGN KEY (tenant_id) REFERENCES tenants (id);
ALTER TABLE orders ADD FOREIGN KEY (tenant_id) REFERENCES tenants (id),
                   ADD FOREIGN KEY (customer_id) REFERENCES customers (id);
ALTER TABLE order_items ADD FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
                        ADD FOREIGN KEY (product_id) REFERENCES products (id);
ALTER TABLE payments ADD FOREIGN KEY (order_id) REFERENCES orders (id);
ALTER TABLE invoices ADD FOREIGN KEY (order_id) REFERENCES orders (id);

-- Code -----------------------------------------------------------------------------------------

CREATE FUNCTION order_total(p_order_id bigint) RETURNS numeric
LANGUAGE plpgsql STABLE AS $$
DECLARE
    total numeric;
BEGIN
    SELECT coalesce(sum(quantity * unit_price), 0) INTO total
    FROM order_items
    WHERE order_id = p_order_id;
    RETURN total;
END
$$;
COMMENT ON FUNCTION order_total(bigint) IS 'Sum of the order''s items, before discounts.';

CREATE SCHEMA reporting;

CREATE VIEW reporting.daily_revenue AS
SELECT o.tenant_id,
       date_trunc('day', o.created_at) AS day,
       count(*) AS orders,
       sum(p.amount) AS revenue
FROM orders o
JOIN payments p ON p.order_id = o.id
WHERE o.status <> 'refunded'
GROUP BY o.tenant_id, date_trunc('day', o.created_at);

-- A read-only role. Roles are cluster-wide: it may exist already, maybe being created by a
-- concurrent load right now.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_reader') THEN
        BEGIN
            CREATE ROLE shop_reader NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public, reporting TO shop_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public, reporting TO shop_reader;
GRANT EXECUTE ON FUNCTION order_total(bigint) TO shop_reader;
