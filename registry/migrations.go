package registry

import "tenantry/migrate"

// schema is the registry's schema in the control database. The lock key
// ("tenantry") and table never change: binaries of every version serialise on
// them.
var schema = &migrate.Schema{
	Name:    "registry",
	Table:   "registry_migrations",
	LockKey: 0x74656e616e747279,
	Steps: []string{
		// 1: the registry.
		`
CREATE TABLE registry_version (
	id      boolean PRIMARY KEY DEFAULT true CHECK (id),
	version bigint  NOT NULL CHECK (version >= 0)
);
INSERT INTO registry_version (id, version) VALUES (true, 0);

CREATE TABLE clusters (
	name       text        PRIMARY KEY,
	local      boolean     NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE members (
	cluster  text NOT NULL REFERENCES clusters (name) ON DELETE CASCADE,
	name     text NOT NULL,
	host     text NOT NULL CHECK (host <> ''),
	port     int  NOT NULL CHECK (port BETWEEN 1 AND 65535),
	zone     text NOT NULL DEFAULT '',
	role     text NOT NULL CHECK (role IN ('primary', 'standby', 'fenced')),
	data_dir text NOT NULL DEFAULT '',
	PRIMARY KEY (cluster, name)
);
-- At most one primary per cluster.
CREATE UNIQUE INDEX members_one_primary ON members (cluster) WHERE role = 'primary';

CREATE TABLE aliases (
	name     text NOT NULL PRIMARY KEY,
	cluster  text NOT NULL REFERENCES clusters (name),
	database text NOT NULL CHECK (database <> '')
);

CREATE TABLE tenants (
	id         text        PRIMARY KEY,
	alias      text        NOT NULL REFERENCES aliases (name),
	state      text        NOT NULL CHECK (state IN ('active', 'paused', 'fenced')),
	epoch      bigint      NOT NULL CHECK (epoch >= 1),
	created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stacks (
	name      text  PRIMARY KEY,
	version   text  NOT NULL DEFAULT '',
	status    text  NOT NULL CHECK (status IN ('deploying', 'ready', 'stopped', 'failed')),
	instances jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(instances) = 'array')
);

-- tenant '' is the default route; other routes are deleted with their tenant.
CREATE TABLE routes (
	tenant   text  PRIMARY KEY,
	backends jsonb NOT NULL CHECK (jsonb_typeof(backends) = 'array')
);

CREATE TABLE api_keys (
	id         text        PRIMARY KEY,
	tenant     text        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
	hash       text        NOT NULL UNIQUE,
	created_at timestamptz NOT NULL DEFAULT now(),
	revoked_at timestamptz
);

CREATE TABLE routers (
	id        text        PRIMARY KEY,
	heartbeat timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE router_acks (
	router text   NOT NULL REFERENCES routers (id) ON DELETE CASCADE,
	tenant text   NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
	epoch  bigint NOT NULL,
	PRIMARY KEY (router, tenant)
);
`,
		// 2: the event log (events.go).
		`
CREATE TABLE events (
	id      bigserial   PRIMARY KEY,
	at      timestamptz NOT NULL DEFAULT clock_timestamp(),
	kind    text        NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.-]{0,62}$'),
	subject text        NOT NULL DEFAULT '',
	message text        NOT NULL DEFAULT '',
	data    jsonb
);
CREATE INDEX events_subject ON events (subject, id);
`,
		// 3: TLS settings per cluster; clusters' admin credentials, the
		// password sealed (keys.Seal, key purpose cluster-credentials,
		// bound to the cluster's name).
		`
ALTER TABLE clusters
	ADD COLUMN sslmode text NOT NULL DEFAULT ''
		CHECK (sslmode IN ('', 'disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full')),
	ADD COLUMN sslrootcert text NOT NULL DEFAULT '';

CREATE TABLE cluster_credentials (
	cluster  text  PRIMARY KEY REFERENCES clusters (name) ON DELETE CASCADE,
	username text  NOT NULL CHECK (username <> ''),
	sealed   bytea NOT NULL
);
`,
		// 4: per-stack request outcomes, one row per gateway, stack and
		// period (stackstats.go).
		`
CREATE TABLE stack_stats (
	gateway  text        NOT NULL,
	stack    text        NOT NULL,
	at       timestamptz NOT NULL DEFAULT clock_timestamp(),
	requests bigint      NOT NULL CHECK (requests >= 0),
	errors   bigint      NOT NULL CHECK (errors >= 0),
	buckets  bigint[]    NOT NULL DEFAULT '{}',
	PRIMARY KEY (gateway, stack, at)
);
CREATE INDEX stack_stats_stack_at ON stack_stats (stack, at);
`,
		// 5: per-tenant request limits at the gateway (limits.go); a
		// tenant without a row has the gateway's defaults.
		`
CREATE TABLE tenant_limits (
	tenant      text    PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
	rate        integer NOT NULL CHECK (rate >= 0),
	concurrency integer NOT NULL CHECK (concurrency >= 0)
);
`,
		// 6: the registry version each router routes by, reported with its
		// heartbeat (tenant create waits for live routers to reach it).
		`
ALTER TABLE routers ADD COLUMN version bigint NOT NULL DEFAULT 0;
`,
		// 7: each tenant's requests per hour at the gateways, kept
		// TenantTrafficRetention (tenanttraffic.go): `isolate --window auto`
		// picks the tenant's quietest hour from it.
		`
CREATE TABLE tenant_traffic (
	tenant   text        NOT NULL,
	hour     timestamptz NOT NULL,
	requests bigint      NOT NULL CHECK (requests >= 0),
	PRIMARY KEY (tenant, hour)
);
CREATE INDEX tenant_traffic_hour ON tenant_traffic (hour);
`,
		// 8: the streaming standbys an alias wants its cluster to have; a
		// move that completes on the alias adds the missing ones.
		`
ALTER TABLE aliases ADD COLUMN standbys integer NOT NULL DEFAULT 0 CHECK (standbys >= 0);
`,
		// 9: synchronous replication per cluster (`cluster set-sync`).
		`
ALTER TABLE clusters ADD COLUMN sync boolean NOT NULL DEFAULT false;
`,
		// 10: isolations (issue 14). A tenant's hourly traffic per stack
		// with its 5xx and latency histogram (the tenant's own p99 on the
		// stack that serves it, the baseline of its isolation's cutover and
		// hypercare); a tenant's sandbox twin (the production gate accepts
		// the twin's sandbox isolation).
		`
ALTER TABLE tenant_traffic ADD COLUMN stack text NOT NULL DEFAULT '',
	ADD COLUMN errors bigint NOT NULL DEFAULT 0 CHECK (errors >= 0),
	ADD COLUMN buckets bigint[] NOT NULL DEFAULT '{}',
	DROP CONSTRAINT tenant_traffic_pkey,
	ADD PRIMARY KEY (tenant, hour, stack);
ALTER TABLE tenants ADD COLUMN sandbox_twin text;
`,
		// 11: the tenants a failover of the cluster paused and has not
		// resumed yet (id -> epoch after the pause): a failover cut short
		// leaves them for the next one to resume (PauseForFailover, Switch).
		`
ALTER TABLE clusters ADD COLUMN failover_paused jsonb NOT NULL DEFAULT '{}'
	CHECK (jsonb_typeof(failover_paused) = 'object');
`,
		// 12: a failover repointed the cluster and its standbys may still
		// follow the fenced primary: the monitor makes them follow the new
		// one and sets synchronous_standby_names, then clears it
		// (Switch with RoleFenced, FollowDone).
		`
ALTER TABLE clusters ADD COLUMN follow_pending boolean NOT NULL DEFAULT false;
`,
	},
}
