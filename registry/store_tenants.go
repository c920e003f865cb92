package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
)

const tenantCols = "id, alias, state, epoch, created_at"

func scanTenant(row pgx.Row) (*Tenant, error) {
	var t Tenant
	var state string
	if err := row.Scan(&t.ID, &t.Alias, &state, &t.Epoch, &t.CreatedAt); err != nil {
		return nil, err
	}
	t.State = State(state)
	return &t, nil
}

// CreateTenant places a new tenant on alias, state active, epoch 1.
// ErrInvalid if the id is malformed or reserved (ValidateNewTenantID),
// ErrExists if it is taken, ErrNotFound if the alias does not exist.
func (s *Store) CreateTenant(ctx context.Context, id, alias string) (*Tenant, error) {
	if err := ValidateNewTenantID(id); err != nil {
		return nil, err
	}
	if err := ValidateName("alias", alias); err != nil {
		return nil, err
	}
	var t *Tenant
	err := s.write(ctx, func(tx pgx.Tx, _ int64) error {
		var err error
		t, err = scanTenant(tx.QueryRow(ctx, `INSERT INTO tenants (id, alias, state, epoch) VALUES ($1, $2, 'active', 1)
			RETURNING `+tenantCols, id, alias))
		if err != nil {
			return dbErr("create tenant "+id, err)
		}
		return addEvent(ctx, tx, EventTenantCreated, id, "tenant created on alias "+alias, map[string]string{"alias": alias})
	})
	return t, err
}

// DeleteTenant deletes a tenant with its placement, route, API keys and
// acks, and records EventTenantDeleted. ErrNotFound if it does not exist.
func (s *Store) DeleteTenant(ctx context.Context, id string) error {
	if err := ValidateTenantID(id); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		if _, err := tx.Exec(ctx, "DELETE FROM routes WHERE tenant = $1", id); err != nil {
			return dbErr("delete route of tenant "+id, err)
		}
		var keys int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM api_keys WHERE tenant = $1", id).Scan(&keys); err != nil {
			return dbErr("count api keys of tenant "+id, err)
		}
		tag, err := tx.Exec(ctx, "DELETE FROM tenants WHERE id = $1", id)
		if err := mustAffect(tag, err, "delete tenant "+id); err != nil {
			return err
		}
		return addEvent(ctx, tx, EventTenantDeleted, id, "tenant deleted with its placement, route and api keys",
			map[string]int{"api_keys": keys})
	})
}

// SetPlacement moves a tenant to alias and state if its epoch still equals
// expectEpoch; the new epoch is expectEpoch+1. ErrConflict if the epoch
// changed, ErrNotFound if the tenant or alias does not exist.
func (s *Store) SetPlacement(ctx context.Context, tenant string, expectEpoch int64, alias string, state State) (*Tenant, error) {
	if err := ValidateTenantID(tenant); err != nil {
		return nil, err
	}
	if err := ValidateName("alias", alias); err != nil {
		return nil, err
	}
	if err := ValidateState(state); err != nil {
		return nil, err
	}
	var t *Tenant
	err := s.write(ctx, func(tx pgx.Tx, _ int64) error {
		what := "set placement of tenant " + tenant
		var err error
		t, err = scanTenant(tx.QueryRow(ctx, `UPDATE tenants SET alias = $3, state = $4, epoch = epoch + 1
			WHERE id = $1 AND epoch = $2 RETURNING `+tenantCols, tenant, expectEpoch, alias, string(state)))
		if !errors.Is(err, pgx.ErrNoRows) {
			return dbErr(what, err)
		}
		var epoch int64
		switch err := tx.QueryRow(ctx, "SELECT epoch FROM tenants WHERE id = $1", tenant).Scan(&epoch); {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("%s: %w", what, ErrNotFound)
		case err != nil:
			return dbErr(what, err)
		}
		return fmt.Errorf("%s: %w: epoch is %d, expected %d", what, ErrConflict, epoch, expectEpoch)
	})
	return t, err
}

// APIKeyPrefix starts every API key secret: tk_<id>_<secret>.
const APIKeyPrefix = "tk_"

var apiKeyRe = regexp.MustCompile(`^tk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$`)

// ValidateAPIKey checks the shape of an API key secret before it is hashed
// and looked up, so that garbage is rejected at the edge.
func ValidateAPIKey(secret string) error {
	if !apiKeyRe.MatchString(secret) {
		return fmt.Errorf("%w: malformed api key", ErrInvalid)
	}
	return nil
}

// HashAPIKey is the stored form of an API key secret: hex SHA-256.
func HashAPIKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// CreateAPIKey creates a key for tenant and returns its secret, which is not
// stored and cannot be recovered. ErrNotFound if the tenant does not exist.
func (s *Store) CreateAPIKey(ctx context.Context, tenant string) (string, *APIKey, error) {
	if err := ValidateTenantID(tenant); err != nil {
		return "", nil, err
	}
	idb, secretb := make([]byte, 8), make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return "", nil, fmt.Errorf("generate api key: %w", err)
	}
	if _, err := rand.Read(secretb); err != nil {
		return "", nil, fmt.Errorf("generate api key: %w", err)
	}
	id := hex.EncodeToString(idb)
	secret := APIKeyPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(secretb)
	k := &APIKey{ID: id, Tenant: tenant, Hash: HashAPIKey(secret)}
	err := s.write(ctx, func(tx pgx.Tx, _ int64) error {
		err := tx.QueryRow(ctx, "INSERT INTO api_keys (id, tenant, hash) VALUES ($1, $2, $3) RETURNING created_at",
			k.ID, k.Tenant, k.Hash).Scan(&k.CreatedAt)
		if err != nil {
			return dbErr("create api key for tenant "+tenant, err)
		}
		return addEvent(ctx, tx, EventKeyCreated, tenant, "api key "+k.ID+" created", map[string]string{"key_id": k.ID})
	})
	if err != nil {
		return "", nil, err
	}
	return secret, k, nil
}

var keyIDRe = regexp.MustCompile(`^[0-9a-f]{16}$`)

// ValidateAPIKeyID checks the shape of an API key id (not its secret).
func ValidateAPIKeyID(id string) error {
	if !keyIDRe.MatchString(id) {
		return fmt.Errorf("%w: api key id %q must be 16 hex digits", ErrInvalid, id)
	}
	return nil
}

// RevokeAPIKey revokes tenant's key id and records EventKeyRevoked; the
// gateway refuses it from its next snapshot on. ErrNotFound if tenant has no
// unrevoked key with that id.
func (s *Store) RevokeAPIKey(ctx context.Context, tenant, id string) error {
	if err := ValidateTenantID(tenant); err != nil {
		return err
	}
	if err := ValidateAPIKeyID(id); err != nil {
		return err
	}
	return s.write(ctx, func(tx pgx.Tx, _ int64) error {
		what := "revoke api key " + id + " of tenant " + tenant
		tag, err := tx.Exec(ctx, "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND tenant = $2 AND revoked_at IS NULL", id, tenant)
		if err := mustAffect(tag, err, what); err != nil {
			return err
		}
		return addEvent(ctx, tx, EventKeyRevoked, tenant, "api key "+id+" revoked", map[string]string{"key_id": id})
	})
}

// RevokeTenantKeys revokes every unrevoked key of tenant in one change and
// records EventKeyRevoked for each. It returns the revoked ids; none is not
// an error.
func (s *Store) RevokeTenantKeys(ctx context.Context, tenant string) ([]string, error) {
	if err := ValidateTenantID(tenant); err != nil {
		return nil, err
	}
	var ids []string
	err := s.write(ctx, func(tx pgx.Tx, _ int64) error {
		rows, _ := tx.Query(ctx, "UPDATE api_keys SET revoked_at = now() WHERE tenant = $1 AND revoked_at IS NULL RETURNING id", tenant)
		var err error
		if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return dbErr("revoke api keys of tenant "+tenant, err)
		}
		for _, id := range ids {
			if err := addEvent(ctx, tx, EventKeyRevoked, tenant, "api key "+id+" revoked", map[string]string{"key_id": id}); err != nil {
				return err
			}
		}
		return nil
	})
	return ids, err
}

// APIKeys lists tenant's keys, revoked ones included, oldest first.
// ErrNotFound if the tenant does not exist.
func (s *Store) APIKeys(ctx context.Context, tenant string) ([]APIKey, error) {
	if err := ValidateTenantID(tenant); err != nil {
		return nil, err
	}
	var keys []APIKey
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)", tenant).Scan(&exists); err != nil {
			return dbErr("list api keys of tenant "+tenant, err)
		}
		if !exists {
			return fmt.Errorf("tenant %s: %w", tenant, ErrNotFound)
		}
		rows, _ := tx.Query(ctx, "SELECT id, tenant, hash, created_at, revoked_at FROM api_keys WHERE tenant = $1 ORDER BY created_at, id", tenant)
		var err error
		keys, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIKey, error) {
			var k APIKey
			err := r.Scan(&k.ID, &k.Tenant, &k.Hash, &k.CreatedAt, &k.RevokedAt)
			return k, err
		})
		return dbErr("list api keys of tenant "+tenant, err)
	})
	return keys, err
}

// SetSandboxTwin marks twin as tenant's sandbox twin: the production gate
// of an isolation of tenant accepts a succeeded sandbox isolation of twin
// (a sandbox tenant made to rehearse it). "" clears the mark. twin need not
// exist here (the sandbox tenant may be gone); it must be a valid id other
// than tenant. ErrNotFound when tenant does not exist. Not routing
// configuration: the registry version does not change.
func (s *Store) SetSandboxTwin(ctx context.Context, tenant, twin string) error {
	if err := ValidateTenantID(tenant); err != nil {
		return err
	}
	var v *string
	if twin != "" {
		if err := ValidateTenantID(twin); err != nil {
			return err
		}
		if twin == tenant {
			return fmt.Errorf("%w: tenant %s cannot be its own sandbox twin", ErrInvalid, tenant)
		}
		v = &twin
	}
	tag, err := s.pool.Exec(ctx, "UPDATE tenants SET sandbox_twin = $2 WHERE id = $1", tenant, v)
	return mustAffect(tag, err, "set the sandbox twin of tenant "+tenant)
}

// SandboxTwin returns tenant's sandbox twin ("" when none is marked).
// ErrNotFound when tenant does not exist.
func (s *Store) SandboxTwin(ctx context.Context, tenant string) (string, error) {
	if err := ValidateTenantID(tenant); err != nil {
		return "", err
	}
	var twin *string
	err := s.pool.QueryRow(ctx, "SELECT sandbox_twin FROM tenants WHERE id = $1", tenant).Scan(&twin)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("tenant %q: %w", tenant, ErrNotFound)
	}
	if err != nil || twin == nil {
		return "", dbErr("read the sandbox twin of tenant "+tenant, err)
	}
	return *twin, nil
}
