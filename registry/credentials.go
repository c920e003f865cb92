package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"tenantry/dbconn"
	"tenantry/keys"
)

// ClusterCredentials gives the admin credential of a cluster: the superuser
// (or replication-capable role) the control plane and the move connect to
// the cluster's members as, for DDL and replication. ErrNotFound when the
// cluster has none. Implementations are safe for concurrent use.
type ClusterCredentials interface {
	ClusterCredential(ctx context.Context, cluster string) (dbconn.Credential, error)
}

// SealedCredential is a cluster's admin credential as the registry stores
// it: the user in clear, the password sealed by a Vault.
type SealedCredential struct {
	User     string
	Password []byte
}

// Vault seals clusters' admin credentials into the registry and opens them,
// with the key derived from the platform secret for keys.ClusterCredentials;
// each sealed password is bound to its cluster's name. It implements
// ClusterCredentials. Only the control plane holds the platform secret, and
// only its registry role can read the table.
type Vault struct {
	store *Store
	key   []byte
}

// NewVault returns a vault on store for the platform secret.
func NewVault(store *Store, secret []byte) (*Vault, error) {
	if store == nil || len(secret) == 0 {
		return nil, errors.New("registry: NewVault needs a store and the platform secret")
	}
	return &Vault{store: store, key: keys.Derive(secret, keys.ClusterCredentials)}, nil
}

// Seal seals cred for cluster.
func (v *Vault) Seal(cluster string, cred dbconn.Credential) (SealedCredential, error) {
	if err := cred.Validate(); err != nil {
		return SealedCredential{}, fmt.Errorf("%w: cluster %s: %v", ErrInvalid, cluster, err)
	}
	sealed, err := keys.Seal(v.key, []byte(cred.Password), []byte(cluster))
	if err != nil {
		return SealedCredential{}, err
	}
	return SealedCredential{User: cred.User, Password: sealed}, nil
}

// ClusterCredential reads and opens cluster's credential.
func (v *Vault) ClusterCredential(ctx context.Context, cluster string) (dbconn.Credential, error) {
	sc, err := v.store.clusterCredential(ctx, cluster)
	if err != nil {
		return dbconn.Credential{}, err
	}
	pw, err := keys.Open(v.key, sc.Password, []byte(cluster))
	if err != nil {
		return dbconn.Credential{}, fmt.Errorf("credential of cluster %s (was the platform secret changed?): %w", cluster, err)
	}
	return dbconn.Credential{User: sc.User, Password: string(pw)}, nil
}

// CreateCluster records a cluster with its members and its admin
// credential, in one transaction.
func (v *Vault) CreateCluster(ctx context.Context, c Cluster, cred dbconn.Credential) error {
	sc, err := v.Seal(c.Name, cred)
	if err != nil {
		return err
	}
	return v.store.createCluster(ctx, c, &sc)
}

func (s *Store) clusterCredential(ctx context.Context, cluster string) (SealedCredential, error) {
	if err := ValidateName("cluster", cluster); err != nil {
		return SealedCredential{}, err
	}
	var sc SealedCredential
	err := s.pool.QueryRow(ctx, "SELECT username, sealed FROM cluster_credentials WHERE cluster = $1", cluster).
		Scan(&sc.User, &sc.Password)
	if errors.Is(err, pgx.ErrNoRows) {
		return SealedCredential{}, fmt.Errorf("credential of cluster %s: %w", cluster, ErrNotFound)
	}
	if err != nil {
		return SealedCredential{}, fmt.Errorf("credential of cluster %s: %w", cluster, err)
	}
	return sc, nil
}

func putCredential(ctx context.Context, tx pgx.Tx, cluster string, sc SealedCredential) error {
	_, err := tx.Exec(ctx, `INSERT INTO cluster_credentials (cluster, username, sealed) VALUES ($1, $2, $3)
		ON CONFLICT (cluster) DO UPDATE SET username = excluded.username, sealed = excluded.sealed`,
		cluster, sc.User, sc.Password)
	return dbErr("set credential of cluster "+cluster, err)
}
