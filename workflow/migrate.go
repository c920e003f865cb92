package workflow

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"tenantry/migrate"
)

// schema is the workflow tables' schema in the control database; its lock
// key ("workflow") and table never change.
var schema = &migrate.Schema{
	Name:    "workflow",
	Table:   "workflow_migrations",
	LockKey: 0x776f726b666c6f77,
	Steps: []string{
		// 1: workflows, their events and signals.
		`
CREATE TABLE workflows (
	id               text        PRIMARY KEY,
	kind             text        NOT NULL,
	family           text        NOT NULL,
	subject          text        NOT NULL,
	state            text        NOT NULL CHECK (state IN ('forward', 'waiting', 'rollback')),
	step             text        NOT NULL,
	status           text        NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled', 'rolled_back')),
	attempt          int         NOT NULL DEFAULT 0,
	data             jsonb       NOT NULL DEFAULT '{}',
	error            text        NOT NULL DEFAULT '',
	run_after        timestamptz NOT NULL DEFAULT now(),
	created_at       timestamptz NOT NULL DEFAULT now(),
	updated_at       timestamptz NOT NULL DEFAULT now(),
	lease_owner      text,
	lease_generation bigint      NOT NULL DEFAULT 0,
	lease_expires    timestamptz
);
-- One active workflow per family and subject.
CREATE UNIQUE INDEX workflows_one_active ON workflows (family, subject) WHERE status = 'running';
CREATE INDEX workflows_runnable ON workflows (run_after) WHERE status = 'running';

CREATE TABLE workflow_events (
	id       bigserial   PRIMARY KEY,
	workflow text        NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
	at       timestamptz NOT NULL DEFAULT clock_timestamp(),
	step     text        NOT NULL,
	kind     text        NOT NULL CHECK (kind IN ('started', 'finished', 'failed', 'info', 'progress')),
	message  text        NOT NULL DEFAULT '',
	data     jsonb
);
CREATE INDEX workflow_events_workflow ON workflow_events (workflow, id);

CREATE TABLE workflow_signals (
	id          bigserial   PRIMARY KEY,
	workflow    text        NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
	name        text        NOT NULL,
	payload     jsonb,
	created_at  timestamptz NOT NULL DEFAULT now(),
	consumed_at timestamptz
);
CREATE INDEX workflow_signals_pending ON workflow_signals (workflow, id) WHERE consumed_at IS NULL;
`,
		// 2: runner liveness (see liveness.go).
		`
CREATE TABLE workflow_runners (
	owner      text        PRIMARY KEY,
	lock_key   int         NOT NULL UNIQUE GENERATED ALWAYS AS IDENTITY,
	started_at timestamptz NOT NULL DEFAULT now()
);
`,
	},
}

// Migrate creates or upgrades the workflow tables in the control database.
// It is idempotent and safe to run from several processes at once.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := schema.Apply(ctx, pool)
	return err
}
