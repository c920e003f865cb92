package oms

import (
	"context"

	"github.com/jackc/pgx/v5"

	"tenantry/migrate"
)

// schema is the OMS schema of a tenant database. Every tenant table must
// keep the rules checked by the schema tests: tenant_id first in the primary
// key, tenant_id in every foreign key, ids from per-table sequences owned by
// their column (so pg_get_serial_sequence finds them for the sequence bump at
// promotion). Its lock key ("oms-sch") differs from the registry's, so that
// a control database that also holds OMS data does not serialise the two.
// oms_schema_version has no tenant_id: it describes the database, and is
// never replicated with a tenant's rows.
var schema = &migrate.Schema{
	Name:    "oms",
	Table:   "oms_schema_version",
	LockKey: 0x6f6d732d736368,
	Steps: []string{
		// 1: the order-management schema.
		`
CREATE SEQUENCE products_id_seq;
CREATE TABLE products (
	tenant_id  text        NOT NULL,
	id         bigint      NOT NULL DEFAULT nextval('products_id_seq'),
	sku        text        NOT NULL CHECK (sku <> ''),
	name       text        NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, sku)
);
ALTER SEQUENCE products_id_seq OWNED BY products.id;

CREATE SEQUENCE locations_id_seq;
CREATE TABLE locations (
	tenant_id  text        NOT NULL,
	id         bigint      NOT NULL DEFAULT nextval('locations_id_seq'),
	code       text        NOT NULL CHECK (code <> ''),
	name       text        NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, code)
);
ALTER SEQUENCE locations_id_seq OWNED BY locations.id;

CREATE SEQUENCE customers_id_seq;
CREATE TABLE customers (
	tenant_id  text        NOT NULL,
	id         bigint      NOT NULL DEFAULT nextval('customers_id_seq'),
	email      text        NOT NULL CHECK (email <> ''),
	name       text        NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, id)
);
ALTER SEQUENCE customers_id_seq OWNED BY customers.id;

-- One stock position per product and location. The ledger invariant:
-- on_hand + reserved + shipped = sum(inventory_adjustments.delta).
CREATE TABLE inventory (
	tenant_id   text        NOT NULL,
	product_id  bigint      NOT NULL,
	location_id bigint      NOT NULL,
	on_hand     bigint      NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
	reserved    bigint      NOT NULL DEFAULT 0 CHECK (reserved >= 0),
	shipped     bigint      NOT NULL DEFAULT 0 CHECK (shipped >= 0),
	updated_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, product_id, location_id),
	FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id),
	FOREIGN KEY (tenant_id, location_id) REFERENCES locations (tenant_id, id)
);

CREATE SEQUENCE inventory_adjustments_id_seq;
CREATE TABLE inventory_adjustments (
	tenant_id   text        NOT NULL,
	id          bigint      NOT NULL DEFAULT nextval('inventory_adjustments_id_seq'),
	product_id  bigint      NOT NULL,
	location_id bigint      NOT NULL,
	delta       bigint      NOT NULL,
	reason      text        NOT NULL CHECK (reason IN ('set', 'receipt')),
	created_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, id),
	FOREIGN KEY (tenant_id, product_id, location_id) REFERENCES inventory (tenant_id, product_id, location_id)
);
ALTER SEQUENCE inventory_adjustments_id_seq OWNED BY inventory_adjustments.id;
CREATE INDEX inventory_adjustments_position_idx ON inventory_adjustments (tenant_id, product_id, location_id);

CREATE SEQUENCE orders_id_seq;
CREATE TABLE orders (
	tenant_id   text        NOT NULL,
	id          bigint      NOT NULL DEFAULT nextval('orders_id_seq'),
	customer_id bigint,
	location_id bigint      NOT NULL,
	status      text        NOT NULL CHECK (status IN ('reserved', 'fulfilled', 'cancelled')),
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, id),
	FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id),
	FOREIGN KEY (tenant_id, location_id) REFERENCES locations (tenant_id, id)
);
ALTER SEQUENCE orders_id_seq OWNED BY orders.id;
CREATE INDEX orders_status_idx ON orders (tenant_id, status, id);

CREATE TABLE order_lines (
	tenant_id  text   NOT NULL,
	order_id   bigint NOT NULL,
	line_no    int    NOT NULL CHECK (line_no > 0),
	product_id bigint NOT NULL,
	quantity   bigint NOT NULL CHECK (quantity > 0),
	PRIMARY KEY (tenant_id, order_id, line_no),
	FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id),
	FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id)
);

CREATE SEQUENCE fulfilments_id_seq;
CREATE TABLE fulfilments (
	tenant_id  text        NOT NULL,
	id         bigint      NOT NULL DEFAULT nextval('fulfilments_id_seq'),
	order_id   bigint      NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, order_id),
	FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id)
);
ALTER SEQUENCE fulfilments_id_seq OWNED BY fulfilments.id;

-- A successful POST/PUT with an Idempotency-Key, stored in the transaction
-- of its effect.
CREATE TABLE idempotency_keys (
	tenant_id    text        NOT NULL,
	key          text        NOT NULL,
	method       text        NOT NULL,
	path         text        NOT NULL,
	request_hash text        NOT NULL,
	status       int         NOT NULL,
	response     jsonb       NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, key)
);
`,
	},
}

// LatestVersion is the schema version Migrate brings a database to.
func LatestVersion() int { return schema.Latest() }

// Beginner starts a transaction; *pgx.Conn, *pgxpool.Pool and pgx.Tx are Beginners.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Querier runs a query returning one row; connections, pools and
// transactions are Queriers.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Migrate applies every migration the database behind conn lacks, each in
// its own transaction, and records each in oms_schema_version. Concurrent
// calls on the same database are safe: they serialise on an advisory
// transaction lock, and the later one finds nothing left to do.
func Migrate(ctx context.Context, conn Beginner) error {
	_, err := schema.Apply(ctx, conn)
	return err
}

// SchemaVersion returns the highest applied OMS migration, 0 when the
// database has none. A move refuses to start when its source and target
// differ.
func SchemaVersion(ctx context.Context, q Querier) (int, error) {
	return schema.Version(ctx, q)
}
