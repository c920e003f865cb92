package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
)

// txBeginner is what reading a snapshot needs: *pgxpool.Pool and *pgx.Conn.
type txBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// readSnapshot reads the whole registry in one REPEATABLE READ, read-only
// transaction, so every part of the snapshot is at the same version.
func readSnapshot(ctx context.Context, db txBeginner) (*Snapshot, error) {
	var snap *Snapshot
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			var err error
			snap, err = loadSnapshot(ctx, tx)
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("read registry snapshot: %w", err)
	}
	return snap, nil
}

func loadSnapshot(ctx context.Context, tx pgx.Tx) (*Snapshot, error) {
	s := &Snapshot{
		Clusters:   map[string]*Cluster{},
		Aliases:    map[string]*Alias{},
		Tenants:    map[string]*Tenant{},
		Stacks:     map[string]*Stack{},
		Routes:     map[string]*Route{},
		KeysByHash: map[string]*APIKey{},
		Limits:     map[string]Limits{},
	}
	steps := []struct {
		name string
		sql  string
		scan func(pgx.Rows) error
	}{
		{"clusters", "SELECT name, local, sslmode, sslrootcert, sync, failover_paused, follow_pending FROM clusters", func(r pgx.Rows) error {
			var c Cluster
			if err := r.Scan(&c.Name, &c.Local, &c.TLS.Mode, &c.TLS.RootCert, &c.Sync, &c.FailoverPaused, &c.FollowPending); err != nil {
				return err
			}
			if len(c.FailoverPaused) == 0 {
				c.FailoverPaused = nil
			}
			c.Members = []Member{}
			s.Clusters[c.Name] = &c
			return nil
		}},
		{"members", "SELECT cluster, name, host, port, zone, role, data_dir FROM members ORDER BY cluster, name", func(r pgx.Rows) error {
			var cluster, role string
			var m Member
			if err := r.Scan(&cluster, &m.Name, &m.Host, &m.Port, &m.Zone, &role, &m.DataDir); err != nil {
				return err
			}
			m.Role = Role(role)
			c := s.Clusters[cluster]
			c.Members = append(c.Members, m)
			return nil
		}},
		{"aliases", "SELECT name, cluster, database, standbys FROM aliases", func(r pgx.Rows) error {
			var a Alias
			if err := r.Scan(&a.Name, &a.Cluster, &a.Database, &a.Standbys); err != nil {
				return err
			}
			s.Aliases[a.Name] = &a
			return nil
		}},
		{"tenants", "SELECT " + tenantCols + " FROM tenants", func(r pgx.Rows) error {
			t, err := scanTenant(r)
			if err != nil {
				return err
			}
			s.Tenants[t.ID] = t
			return nil
		}},
		{"stacks", "SELECT name, version, status, instances FROM stacks", func(r pgx.Rows) error {
			var st Stack
			var inst []byte
			if err := r.Scan(&st.Name, &st.Version, &st.Status, &inst); err != nil {
				return err
			}
			if err := json.Unmarshal(inst, &st.Instances); err != nil {
				return fmt.Errorf("instances of stack %s: %w", st.Name, err)
			}
			s.Stacks[st.Name] = &st
			return nil
		}},
		{"routes", "SELECT tenant, backends FROM routes", func(r pgx.Rows) error {
			var rt Route
			var b []byte
			if err := r.Scan(&rt.Tenant, &b); err != nil {
				return err
			}
			if err := json.Unmarshal(b, &rt.Backends); err != nil {
				return fmt.Errorf("backends of route %q: %w", rt.Tenant, err)
			}
			s.Routes[rt.Tenant] = &rt
			return nil
		}},
		{"limits", "SELECT tenant, rate, concurrency FROM tenant_limits", func(r pgx.Rows) error {
			var tenant string
			var l Limits
			if err := r.Scan(&tenant, &l.Rate, &l.Concurrency); err != nil {
				return err
			}
			s.Limits[tenant] = l
			return nil
		}},
		{"api keys", "SELECT id, tenant, hash, created_at FROM api_keys WHERE revoked_at IS NULL", func(r pgx.Rows) error {
			var k APIKey
			if err := r.Scan(&k.ID, &k.Tenant, &k.Hash, &k.CreatedAt); err != nil {
				return err
			}
			s.KeysByHash[k.Hash] = &k
			return nil
		}},
	}
	// One batch: a watcher reads a snapshot on every change (a pause among
	// them), and one round trip instead of one per query keeps that short
	// on a busy machine.
	b := &pgx.Batch{}
	b.Queue("SELECT version FROM registry_version")
	for _, st := range steps {
		b.Queue(st.sql)
	}
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	if err := br.QueryRow().Scan(&s.Version); err != nil {
		return nil, fmt.Errorf("version: %w", err)
	}
	for _, st := range steps {
		rows, err := br.Query()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", st.name, err)
		}
		for rows.Next() && err == nil {
			err = st.scan(rows)
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", st.name, err)
		}
	}
	if err := br.Close(); err != nil {
		return nil, err
	}
	for _, c := range s.Clusters {
		sort.Slice(c.Members, func(i, j int) bool { return c.Members[i].Name < c.Members[j].Name })
	}
	s.LoadedAt = time.Now()
	return s, nil
}
