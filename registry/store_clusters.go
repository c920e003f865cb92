package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// CreateCluster records a cluster with its members. ErrExists if the name is
// taken.
func (s *Store) CreateCluster(ctx context.Context, c Cluster) error {
	return s.createCluster(ctx, c, nil)
}

// createCluster records c and, unless nil, its sealed credential.
func (s *Store) createCluster(ctx context.Context, c Cluster, cred *SealedCredential) error {
	if err := c.Validate(); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		if _, err := tx.Exec(ctx, "INSERT INTO clusters (name, local, sslmode, sslrootcert, sync) VALUES ($1, $2, $3, $4, $5)",
			c.Name, c.Local, c.TLS.Mode, c.TLS.RootCert, c.Sync); err != nil {
			return dbErr("create cluster "+c.Name, err)
		}
		for _, m := range c.Members {
			if err := insertMember(ctx, tx, c.Name, m); err != nil {
				return err
			}
		}
		if cred != nil {
			return putCredential(ctx, tx, c.Name, *cred)
		}
		return nil
	})
}

func insertMember(ctx context.Context, tx pgx.Tx, cluster string, m Member) error {
	_, err := tx.Exec(ctx, `INSERT INTO members (cluster, name, host, port, zone, role, data_dir)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, cluster, m.Name, m.Host, m.Port, m.Zone, string(m.Role), m.DataDir)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.ConstraintName == "members_one_primary" {
		return fmt.Errorf("add member %s to cluster %s: %w: cluster already has a primary", m.Name, cluster, ErrConflict)
	}
	if err != nil {
		return dbErr(fmt.Sprintf("add member %s to cluster %s", m.Name, cluster), err)
	}
	return nil
}

// AddMember adds a member to an existing cluster. ErrNotFound if the cluster
// does not exist, ErrExists if the member does, ErrConflict if m is a second
// primary.
func (s *Store) AddMember(ctx context.Context, cluster string, m Member) error {
	if err := ValidateName("cluster", cluster); err != nil {
		return err
	}
	if err := m.Validate(); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		return insertMember(ctx, tx, cluster, m)
	})
}

// RemoveMember removes a member from a cluster.
func (s *Store) RemoveMember(ctx context.Context, cluster, member string) error {
	if err := validateNames("cluster", cluster, "member", member); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		tag, err := tx.Exec(ctx, "DELETE FROM members WHERE cluster = $1 AND name = $2", cluster, member)
		return mustAffect(tag, err, fmt.Sprintf("remove member %s of cluster %s", member, cluster))
	})
}

// SetClusterSync records whether cluster replicates synchronously.
func (s *Store) SetClusterSync(ctx context.Context, cluster string, sync bool) error {
	if err := ValidateName("cluster", cluster); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		tag, err := tx.Exec(ctx, "UPDATE clusters SET sync = $2 WHERE name = $1", cluster, sync)
		return mustAffect(tag, err, "set sync of cluster "+cluster)
	})
}

// SetMemberRole sets one member's role. Making a member primary while
// another is primary is ErrConflict: use SetPrimary.
func (s *Store) SetMemberRole(ctx context.Context, cluster, member string, role Role) error {
	if err := validateNames("cluster", cluster, "member", member); err != nil {
		return err
	}
	if err := ValidateRole(role); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		what := fmt.Sprintf("set role of member %s of cluster %s", member, cluster)
		tag, err := tx.Exec(ctx, "UPDATE members SET role = $3 WHERE cluster = $1 AND name = $2", cluster, member, string(role))
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.ConstraintName == "members_one_primary" {
			return fmt.Errorf("%s: %w: cluster already has a primary", what, ErrConflict)
		}
		return mustAffect(tag, err, what)
	})
}

// SetPrimary makes newPrimary the cluster's primary and, in the same
// transaction, gives the previous primary (if any) oldRole, which must be
// RoleStandby or RoleFenced.
func (s *Store) SetPrimary(ctx context.Context, cluster, newPrimary string, oldRole Role) error {
	if err := validateNames("cluster", cluster, "member", newPrimary); err != nil {
		return err
	}
	if oldRole != RoleStandby && oldRole != RoleFenced {
		return fmt.Errorf("%w: old primary role %q (want standby or fenced)", ErrInvalid, oldRole)
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		return setPrimary(ctx, tx, cluster, newPrimary, oldRole)
	})
}

func setPrimary(ctx context.Context, tx pgx.Tx, cluster, newPrimary string, oldRole Role) error {
	what := fmt.Sprintf("set primary of cluster %s to %s", cluster, newPrimary)
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM members WHERE cluster = $1 AND name = $2)",
		cluster, newPrimary).Scan(&exists); err != nil {
		return dbErr(what, err)
	}
	if !exists {
		return fmt.Errorf("%s: member: %w", what, ErrNotFound)
	}
	if _, err := tx.Exec(ctx, "UPDATE members SET role = $3 WHERE cluster = $1 AND role = 'primary' AND name <> $2",
		cluster, newPrimary, string(oldRole)); err != nil {
		return dbErr(what, err)
	}
	_, err := tx.Exec(ctx, "UPDATE members SET role = 'primary' WHERE cluster = $1 AND name = $2", cluster, newPrimary)
	return dbErr(what, err)
}

// DeleteCluster deletes a cluster and its members. ErrConflict if an alias
// still names it.
func (s *Store) DeleteCluster(ctx context.Context, name string) error {
	if err := ValidateName("cluster", name); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		tag, err := tx.Exec(ctx, "DELETE FROM clusters WHERE name = $1", name)
		return mustAffect(tag, err, "delete cluster "+name)
	})
}

// CreateAlias records an alias. ErrNotFound if its cluster does not exist.
func (s *Store) CreateAlias(ctx context.Context, a Alias) error {
	if err := a.Validate(); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		_, err := tx.Exec(ctx, "INSERT INTO aliases (name, cluster, database, standbys) VALUES ($1, $2, $3, $4)",
			a.Name, a.Cluster, a.Database, a.Standbys)
		return dbErr("create alias "+a.Name, err)
	})
}

// RepointAlias points an alias at another cluster and database.
func (s *Store) RepointAlias(ctx context.Context, alias, cluster, database string) error {
	a := Alias{Name: alias, Cluster: cluster, Database: database}
	if err := a.Validate(); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		tag, err := tx.Exec(ctx, "UPDATE aliases SET cluster = $2, database = $3 WHERE name = $1", alias, cluster, database)
		return mustAffect(tag, err, "repoint alias "+alias)
	})
}

// DeleteAlias deletes an alias. ErrConflict if a tenant is placed on it.
func (s *Store) DeleteAlias(ctx context.Context, name string) error {
	if err := ValidateName("alias", name); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		tag, err := tx.Exec(ctx, "DELETE FROM aliases WHERE name = $1", name)
		return mustAffect(tag, err, "delete alias "+name)
	})
}

// validateNames validates (kind, name) pairs with ValidateName.
func validateNames(kindNames ...string) error {
	for i := 0; i+1 < len(kindNames); i += 2 {
		if err := ValidateName(kindNames[i], kindNames[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// SetAliasStandbys sets how many streaming standbys alias wants its
// cluster to have (a move completing on the alias adds the missing ones).
func (s *Store) SetAliasStandbys(ctx context.Context, alias string, standbys int) error {
	if err := ValidateName("alias", alias); err != nil {
		return err
	}
	if standbys < 0 {
		return fmt.Errorf("%w: alias %s wants %d standbys", ErrInvalid, alias, standbys)
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		tag, err := tx.Exec(ctx, "UPDATE aliases SET standbys = $2 WHERE name = $1", alias, standbys)
		return mustAffect(tag, err, "set the standbys of alias "+alias)
	})
}
