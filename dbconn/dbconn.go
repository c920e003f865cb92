// Package dbconn builds the configuration of every connection tenantry makes
// to a PostgreSQL server — host, port, database, user, password and TLS — in
// one place: the control plane's admin connections, the tenant router's
// pools, the move's replication connections and the connection strings of
// its subscriptions, the checker's and the tools' connections, the local
// clusters' own. A cluster's TLS settings come from the registry
// (registry.Cluster.TLS) and reach every one of them through Config.
package dbconn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrInvalid means a TLS setting or credential failed validation.
var ErrInvalid = errors.New("invalid connection setting")

// SSL modes, as libpq names them.
const (
	SSLDisable    = "disable"
	SSLAllow      = "allow"
	SSLPrefer     = "prefer"
	SSLRequire    = "require"
	SSLVerifyCA   = "verify-ca"
	SSLVerifyFull = "verify-full"
)

// DefaultConnectTimeout bounds the connection of a Config whose
// ConnectTimeout is zero.
const DefaultConnectTimeout = 10 * time.Second

// TLS is how connections to a cluster's members are secured: libpq's
// sslmode and, for verify-ca and verify-full, the CA certificate file that
// signs the servers' certificates. The zero value means sslmode "prefer"
// (libpq's default: TLS when the server offers it, unverified).
//
// RootCert is a path. The control plane reads it, and so does every cluster
// member that subscribes to another (a move's subscription connects from the
// target server, with these settings): the file must exist at that path on
// those machines too.
type TLS struct {
	Mode     string `json:"sslmode,omitempty"`
	RootCert string `json:"sslrootcert,omitempty"`
}

// Validate checks the mode and that the verifying modes name a CA file.
func (t TLS) Validate() error {
	switch t.Mode {
	case "", SSLDisable, SSLAllow, SSLPrefer, SSLRequire:
	case SSLVerifyCA, SSLVerifyFull:
		if t.RootCert == "" {
			return fmt.Errorf("%w: sslmode %s needs a CA file (sslrootcert)", ErrInvalid, t.Mode)
		}
	default:
		return fmt.Errorf("%w: sslmode %q (want disable, allow, prefer, require, verify-ca or verify-full)", ErrInvalid, t.Mode)
	}
	if strings.ContainsAny(t.RootCert, "\x00\n") {
		return fmt.Errorf("%w: sslrootcert %q", ErrInvalid, t.RootCert)
	}
	return nil
}

// mode is the effective sslmode.
func (t TLS) mode() string {
	if t.Mode == "" {
		return SSLPrefer
	}
	return t.Mode
}

// Credential is a database user and its password. Its String and
// LogValue never show the password.
type Credential struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// Validate checks that the user is set and neither value holds a NUL.
func (c Credential) Validate() error {
	if c.User == "" {
		return fmt.Errorf("%w: credential without a user", ErrInvalid)
	}
	if strings.ContainsRune(c.User, 0) || strings.ContainsRune(c.Password, 0) {
		return fmt.Errorf("%w: credential holds a NUL byte", ErrInvalid)
	}
	return nil
}

func (c Credential) String() string { return "user " + c.User + " (password redacted)" }

// Config is one connection's target: a server, a database, who connects and
// how it is secured.
type Config struct {
	Host     string
	Port     int
	Database string
	Credential
	TLS TLS
	// ConnectTimeout bounds establishing the connection; 0 means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// ApplicationName is shown in pg_stat_activity; empty leaves it unset.
	ApplicationName string
}

// String renders c as a libpq keyword/value connection string, every value
// quoted, password included: what CREATE SUBSCRIPTION ... CONNECTION takes.
// Never log it; Redacted is for messages.
func (c Config) String() string { return c.render(true) }

// Redacted is String without the password.
func (c Config) Redacted() string { return c.render(false) }

func (c Config) render(withPassword bool) string {
	timeout := c.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	kv := []string{"host", c.Host, "port", strconv.Itoa(c.Port)}
	if c.Database != "" { // none for a walreceiver's primary_conninfo
		kv = append(kv, "dbname", c.Database)
	}
	kv = append(kv, "user", c.User)
	if withPassword && c.Password != "" {
		kv = append(kv, "password", c.Password)
	}
	kv = append(kv, "sslmode", c.TLS.mode())
	if c.TLS.RootCert != "" {
		kv = append(kv, "sslrootcert", c.TLS.RootCert)
	}
	kv = append(kv, "connect_timeout", strconv.Itoa(max(1, int(timeout.Round(time.Second)/time.Second))))
	if c.ApplicationName != "" {
		kv = append(kv, "application_name", c.ApplicationName)
	}
	parts := make([]string, 0, len(kv)/2)
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	for i := 0; i < len(kv); i += 2 {
		parts = append(parts, kv[i]+"='"+r.Replace(kv[i+1])+"'")
	}
	return strings.Join(parts, " ")
}

// Target names the server and database in messages: "host:port/db".
func (c Config) Target() string {
	return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
}

// ConnConfig is c as a pgx connection config. The password is set on the
// parsed config, not parsed, so that no parse error can carry it.
func (c Config) ConnConfig() (*pgx.ConnConfig, error) {
	if err := c.TLS.Validate(); err != nil {
		return nil, err
	}
	cc, err := pgx.ParseConfig(c.Redacted())
	if err != nil {
		return nil, fmt.Errorf("connection config for %s: %w", c.Target(), err)
	}
	cc.Password = c.Password
	if c.ConnectTimeout > 0 {
		cc.ConnectTimeout = c.ConnectTimeout
	}
	return cc, nil
}

// PoolConfig is c as a pgx pool config (pool sizes left at pgx's defaults).
func (c Config) PoolConfig() (*pgxpool.Config, error) {
	cc, err := c.ConnConfig()
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	pc.ConnConfig = cc
	return pc, nil
}

// Connect opens one connection.
func (c Config) Connect(ctx context.Context) (*pgx.Conn, error) {
	cc, err := c.ConnConfig()
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect %s as %s: %w", c.Target(), c.User, err)
	}
	return conn, nil
}

// Pool opens a pool of at most maxConns connections (0: pgx's default).
func (c Config) Pool(ctx context.Context, maxConns int32) (*pgxpool.Pool, error) {
	pc, err := c.PoolConfig()
	if err != nil {
		return nil, err
	}
	if maxConns > 0 {
		pc.MaxConns = maxConns
	}
	p, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect %s as %s: %w", c.Target(), c.User, err)
	}
	return p, nil
}

// ReadCredentialFile reads a credential from a file of `user=NAME` and
// `password=SECRET` lines (blank lines and # comments allowed; the password
// is taken verbatim, spaces included). The file must not be readable by
// group or others. Errors name the file and line, never its text.
func ReadCredentialFile(path string) (Credential, error) {
	f, err := os.Open(path)
	if err != nil {
		return Credential{}, fmt.Errorf("credential file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Credential{}, fmt.Errorf("credential file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return Credential{}, fmt.Errorf("credential file %s is readable by others (mode %04o): chmod 600 it", path, st.Mode().Perm())
	}
	var cred Credential
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		switch {
		case ok && strings.TrimSpace(k) == "user":
			cred.User = strings.TrimSpace(v)
		case ok && strings.TrimSpace(k) == "password":
			cred.Password = v
		default:
			return Credential{}, fmt.Errorf("credential file %s line %d: want user=NAME or password=SECRET", path, n)
		}
	}
	if err := sc.Err(); err != nil {
		return Credential{}, fmt.Errorf("credential file %s: %w", path, err)
	}
	if cred.User == "" {
		return Credential{}, fmt.Errorf("credential file %s has no user= line", path)
	}
	return cred, nil
}
