// Package localpg creates and runs local PostgreSQL clusters: initdb on a free
// loopback port, start, stop, restart, kill -9, physical standbys made with
// pg_basebackup -R, and promotion. It is what the embedded local mode
// (`tenantry up`, `tenantry demo`) and the tests (through pgtest) stand on.
//
// PostgreSQL refuses to run as root. When the calling process is root, every
// PostgreSQL program is executed with the credentials of an unprivileged user
// (the `postgres` system user unless TENANTRY_PG_USER names another), and the
// cluster's directory is owned by that user.
//
// Every TCP connection authenticates with scram-sha-256, replication
// included: the superuser gets a password at initdb (Config.Password, or a
// generated one), which localpg keeps in memory only (Cluster.Password, never
// in cluster.json); the caller keeps it where it keeps its own secrets (the
// local platform: platform.json, mode 0600) and sets it again after Open.
// Standbys stream as Replicator (REPLICATION, not a superuser), whose
// password — derived from the superuser's, which it does not reveal — is in
// the standby's primary_conninfo, inside its data directory (mode 0700, the
// server user's); the superuser's password is in no file localpg writes.
package localpg

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"tenantry/dbconn"
)

// Errors callers branch on.
var (
	// ErrBinariesMissing means PostgreSQL's server binaries were not found.
	ErrBinariesMissing = errors.New("postgresql server binaries not found")
	// ErrPortInUse means the cluster's port was taken by another process.
	ErrPortInUse = errors.New("port in use")
	// ErrDirInUse means a postmaster is already running on the data directory.
	ErrDirInUse = errors.New("data directory in use by a running postmaster")
	// ErrNotRunning means the cluster has no running postmaster.
	ErrNotRunning = errors.New("cluster not running")
)

// Superuser is the bootstrap superuser of every local cluster. It connects
// from loopback only, with its password (scram-sha-256).
const Superuser = "postgres"

// Replicator is the role standbys stream as (REPLICATION, not a superuser),
// so that the superuser's password is written into no standby's
// configuration. Its password is derived from the superuser's.
const Replicator = "tenantry_replication"

// metaFile records a cluster's settings beside its data directory.
const metaFile = "cluster.json"

// DefaultSettings are written into every cluster's postgresql.conf. They make
// the cluster usable as a logical replication source and target and as the
// primary of physical standbys.
var DefaultSettings = map[string]string{
	"listen_addresses":                  "'127.0.0.1'",
	"unix_socket_directories":           "''",
	"wal_level":                         "logical",
	"max_wal_senders":                   "40",
	"max_replication_slots":             "40",
	"max_logical_replication_workers":   "16",
	"max_sync_workers_per_subscription": "4",
	"max_worker_processes":              "32",
	"max_connections":                   "300",
	"max_slot_wal_keep_size":            "'2GB'",
	"hot_standby":                       "on",
	"wal_keep_size":                     "'256MB'",
	"shared_buffers":                    "'128MB'",
	"log_line_prefix":                   "'%m [%p] %u@%d '",
	"log_min_messages":                  "warning",
	"timezone":                          "'UTC'",
	// A new subscription worker starts at most once per this interval
	// (default 5 s): moves start their links faster with a shorter one.
	"wal_retrieve_retry_interval": "'200ms'",
}

// Config describes a cluster to create. The zero value of every field but Dir
// means a documented default.
type Config struct {
	// Dir is the cluster's own directory; it must not exist or be empty.
	// PGDATA is Dir/pgdata and the server log is Dir/postgres.log.
	Dir string
	// Name labels the cluster in logs and errors; default: base name of Dir.
	Name string
	// BinDir holds initdb, pg_ctl and postgres; default: FindBinDir().
	BinDir string
	// Port to listen on, on 127.0.0.1; 0 picks a free port.
	Port int
	// Settings are added to DefaultSettings (and override them).
	Settings map[string]string
	// Password of the superuser; empty generates one (Cluster.Password).
	Password string
}

// GeneratePassword returns a random password for a superuser.
func GeneratePassword() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Cluster is one local PostgreSQL cluster. Its methods are safe to call from
// several goroutines only in the sense that PostgreSQL's own tools serialise
// them; callers own the lifecycle.
type Cluster struct {
	Name   string `json:"name"`
	Dir    string `json:"dir"`
	BinDir string `json:"bin_dir"`
	Host   string `json:"host"`
	Port   int    `json:"port"`
	// Primary is the port of the cluster this one streams from, 0 for a primary.
	Primary int `json:"primary,omitempty"`
	// Password is the superuser's: set by Create and AddStandby (a standby
	// has its primary's), to be set by the caller after Open. Never saved
	// by localpg.
	Password string `json:"-"`
}

// DataDir is PGDATA.
func (c *Cluster) DataDir() string { return filepath.Join(c.Dir, "pgdata") }

// LogPath is the server log kept for this cluster.
func (c *Cluster) LogPath() string { return filepath.Join(c.Dir, "postgres.log") }

// Credential is the superuser's.
func (c *Cluster) Credential() dbconn.Credential {
	return dbconn.Credential{User: Superuser, Password: c.Password}
}

// Config is the connection config of database db as the superuser: over
// loopback, without TLS.
func (c *Cluster) Config(db string) dbconn.Config {
	return dbconn.Config{Host: c.Host, Port: c.Port, Database: db, Credential: c.Credential(),
		TLS: dbconn.TLS{Mode: dbconn.SSLDisable}}
}

// DSN returns a keyword/value connection string to database db as the
// superuser, password included: keep it out of logs, flags and other
// processes' environments.
func (c *Cluster) DSN(db string) string { return c.Config(db).String() }

// Connect opens a superuser connection to database db.
func (c *Cluster) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	return c.Config(db).Connect(ctx)
}

// FindBinDir locates PostgreSQL's server binaries: $TENANTRY_PG_BIN, then the
// directory of pg_ctl on $PATH, then the newest /usr/lib/postgresql/*/bin.
func FindBinDir() (string, error) {
	if d := os.Getenv("TENANTRY_PG_BIN"); d != "" {
		if hasServerBinaries(d) {
			return d, nil
		}
		return "", fmt.Errorf("%w in TENANTRY_PG_BIN=%s", ErrBinariesMissing, d)
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if d := filepath.Dir(p); hasServerBinaries(d) {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if hasServerBinaries(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w (initdb, pg_ctl, postgres, pg_basebackup) on $PATH or in /usr/lib/postgresql/*/bin: "+
		"install them (Debian/Ubuntu: apt-get install postgresql; Fedora: dnf install postgresql-server; "+
		"macOS: brew install postgresql@15) or set TENANTRY_PG_BIN", ErrBinariesMissing)
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func hasServerBinaries(d string) bool {
	for _, b := range []string{"initdb", "pg_ctl", "postgres", "pg_basebackup"} {
		if st, err := os.Stat(filepath.Join(d, b)); err != nil || st.IsDir() {
			return false
		}
	}
	return true
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Create runs initdb for a new cluster and writes its configuration. The
// cluster is not started.
func Create(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Dir == "" {
		return nil, errors.New("localpg: Config.Dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if cfg.BinDir == "" {
		if cfg.BinDir, err = FindBinDir(); err != nil {
			return nil, err
		}
	}
	if cfg.Name == "" {
		cfg.Name = filepath.Base(dir)
	}
	if cfg.Port == 0 {
		if cfg.Port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("create cluster %s: directory %s is not empty", cfg.Name, dir)
	}
	if cfg.Password == "" {
		cfg.Password = GeneratePassword()
	}
	c := &Cluster{Name: cfg.Name, Dir: dir, BinDir: cfg.BinDir, Host: "127.0.0.1", Port: cfg.Port, Password: cfg.Password}
	if err := prepareDir(dir); err != nil {
		return nil, fmt.Errorf("create cluster %s: %w", c.Name, err)
	}
	// initdb reads the password from a file: 0600, the server user's, gone
	// once initdb has run.
	pwfile := filepath.Join(dir, ".pwfile")
	if err := os.WriteFile(pwfile, []byte(c.Password+"\n"), 0o600); err != nil {
		return nil, err
	}
	defer os.Remove(pwfile)
	if err := chownToRunner(pwfile); err != nil {
		return nil, err
	}
	out, err := c.run(ctx, "initdb", "-D", c.DataDir(), "-U", Superuser, "--pwfile", pwfile,
		"--auth-host=scram-sha-256", "--auth-local=peer", "--encoding=UTF8", "--locale=C", "--no-sync")
	if err != nil {
		return nil, fmt.Errorf("initdb %s: %w: %s", c.Name, err, out)
	}
	_ = os.Remove(pwfile)
	settings := map[string]string{}
	for k, v := range DefaultSettings {
		settings[k] = v
	}
	for k, v := range cfg.Settings {
		settings[k] = v
	}
	settings["port"] = strconv.Itoa(c.Port)
	if err := appendConf(c.DataDir(), settings); err != nil {
		return nil, err
	}
	// Unix sockets are off (unix_socket_directories = ''); were they on, only
	// the OS user running the server could use them as itself (peer).
	hba := "# written by tenantry localpg: loopback only, every TCP connection authenticated\n" +
		"local all all peer\n" +
		"host replication all 127.0.0.1/32 scram-sha-256\n" +
		"host all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(c.DataDir(), "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return nil, err
	}
	if err := chownToRunner(filepath.Join(c.DataDir(), "pg_hba.conf")); err != nil {
		return nil, err
	}
	return c, c.save()
}

// Open loads a cluster created earlier from its directory.
func Open(dir string) (*Cluster, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, fmt.Errorf("open cluster: %w", err)
	}
	var c Cluster
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("open cluster %s: %w", dir, err)
	}
	return &c, nil
}

func (c *Cluster) save() error {
	b, _ := json.MarshalIndent(c, "", "  ")
	return os.WriteFile(filepath.Join(c.Dir, metaFile), b, 0o644)
}

func appendConf(dataDir string, settings map[string]string) error {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("\n# tenantry localpg settings\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, settings[k])
	}
	f, err := os.OpenFile(filepath.Join(dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	defer f.Close()
	_, err = f.WriteString(b.String())
	return err
}

// Start starts the postmaster and waits until it accepts connections.
func (c *Cluster) Start(ctx context.Context) error {
	if pid, ok := c.postmasterPID(); ok && processAlive(pid) {
		return fmt.Errorf("start %s: %w (pid %d, %s)", c.Name, ErrDirInUse, pid, c.DataDir())
	}
	if l, err := net.Listen("tcp", net.JoinHostPort(c.Host, strconv.Itoa(c.Port))); err != nil {
		return fmt.Errorf("start %s: %w: %d", c.Name, ErrPortInUse, c.Port)
	} else {
		l.Close()
	}
	logStart := fileSize(c.LogPath())
	out, err := c.run(ctx, "pg_ctl", "start", "-w", "-t", "120", "-D", c.DataDir(), "-l", c.LogPath())
	if err != nil {
		tail := c.logSince(logStart)
		if strings.Contains(tail, "could not bind") || strings.Contains(tail, "Address already in use") {
			return fmt.Errorf("start %s: %w: %d", c.Name, ErrPortInUse, c.Port)
		}
		return fmt.Errorf("start %s: %w: %s\nserver log (%s):\n%s", c.Name, err, out, c.LogPath(), tail)
	}
	return nil
}

// Stop shuts the cluster down with a fast shutdown (sessions are disconnected,
// a shutdown checkpoint is written) and waits for it to finish.
func (c *Cluster) Stop(ctx context.Context) error {
	if pid, ok := c.postmasterPID(); !ok || !processAlive(pid) {
		return nil
	}
	if out, err := c.run(ctx, "pg_ctl", "stop", "-w", "-t", "120", "-m", "fast", "-D", c.DataDir()); err != nil {
		return fmt.Errorf("stop %s: %w: %s", c.Name, err, out)
	}
	return nil
}

// Restart stops and starts the cluster.
func (c *Cluster) Restart(ctx context.Context) error {
	if err := c.Stop(ctx); err != nil {
		return err
	}
	return c.Start(ctx)
}

// Running reports whether the cluster's postmaster is alive.
func (c *Cluster) Running() bool {
	pid, ok := c.postmasterPID()
	return ok && processAlive(pid)
}

// Kill sends SIGKILL to the postmaster and to all its children, as a crash
// would, and waits until they are gone. The next Start runs crash recovery.
func (c *Cluster) Kill() error {
	pid, ok := c.postmasterPID()
	if !ok || !processAlive(pid) {
		return fmt.Errorf("kill %s: %w", c.Name, ErrNotRunning)
	}
	children := childrenOf(pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for _, ch := range children {
		_ = syscall.Kill(ch, syscall.SIGKILL)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range append(children, pid) {
		for processAlive(p) {
			if time.Now().After(deadline) {
				return fmt.Errorf("kill %s: process %d still alive", c.Name, p)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The dead postmaster may linger as a zombie until its parent reaps it,
	// and PostgreSQL would take the zombie for a live postmaster. Every
	// process of the cluster is gone, so the lock file is stale.
	if err := os.Remove(filepath.Join(c.DataDir(), "postmaster.pid")); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("kill %s: remove stale postmaster.pid: %w", c.Name, err)
	}
	return nil
}

// Destroy stops the cluster (killing it if a clean stop fails) and removes its
// directory.
func (c *Cluster) Destroy(ctx context.Context) error {
	if c.Running() {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.Stop(sctx)
		cancel()
		if err != nil {
			_ = c.Kill()
		}
	}
	return os.RemoveAll(c.Dir)
}

// AddStandby makes a physical streaming standby of c in dir with
// pg_basebackup -R, on a free port, and starts it.
func (c *Cluster) AddStandby(ctx context.Context, dir, name string) (*Cluster, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = filepath.Base(dir)
	}
	s := &Cluster{Name: name, Dir: dir, BinDir: c.BinDir, Host: c.Host, Port: port, Password: c.Password}
	if err := prepareDir(dir); err != nil {
		return nil, fmt.Errorf("add standby %s: %w", name, err)
	}
	return s, s.copyFrom(ctx, c)
}

// Rebuild makes a stopped (or dead) cluster a fresh streaming standby of
// primary, on its own port: its data directory is replaced by a base
// backup of primary. It is how a fenced former primary, whose WAL may have
// diverged, rejoins its cluster.
func (c *Cluster) Rebuild(ctx context.Context, primary *Cluster) error {
	if c.Running() {
		if err := c.Stop(ctx); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(c.DataDir()); err != nil {
		return fmt.Errorf("rebuild %s: %w", c.Name, err)
	}
	return c.copyFrom(ctx, primary)
}

// copyFrom fills c's (empty) data directory with a base backup of primary,
// configures it as primary's standby on c's port and starts it.
func (c *Cluster) copyFrom(ctx context.Context, primary *Cluster) error {
	if err := primary.ensureReplicator(ctx); err != nil {
		return fmt.Errorf("copy %s from %s: %w", c.Name, primary.Name, err)
	}
	// The password reaches pg_basebackup in its environment, not its
	// arguments (which ps shows to every user).
	out, err := c.runEnv(ctx, []string{"PGPASSWORD=" + primary.replicatorPassword()}, "pg_basebackup", "-D", c.DataDir(), "-X", "stream", "-c", "fast",
		"-h", primary.Host, "-p", strconv.Itoa(primary.Port), "-U", Replicator, "--no-sync")
	if err != nil {
		return fmt.Errorf("pg_basebackup for %s: %w: %s", c.Name, err, out)
	}
	if err := c.standBy(primary); err != nil {
		return err
	}
	if err := appendConf(c.DataDir(), map[string]string{"port": strconv.Itoa(c.Port)}); err != nil {
		return err
	}
	c.Primary = primary.Port
	if err := c.save(); err != nil {
		return err
	}
	return c.Start(ctx)
}

// Configure adds settings to the cluster's postgresql.conf (later lines win
// over earlier ones). Values are written as given: quote strings. They take
// effect at the next start (or reload, for settings that allow it).
func (c *Cluster) Configure(settings map[string]string) error {
	return appendConf(c.DataDir(), settings)
}

// Promote ends recovery on a standby and waits until it accepts writes.
func (c *Cluster) Promote(ctx context.Context) error {
	if out, err := c.run(ctx, "pg_ctl", "promote", "-w", "-t", "120", "-D", c.DataDir()); err != nil {
		return fmt.Errorf("promote %s: %w: %s", c.Name, err, out)
	}
	c.Primary = 0
	return c.save()
}

// Follow reconfigures a stopped cluster as a standby of primary (for a former
// primary rejoining after a switchover). The caller must make sure its WAL has
// not diverged (a clean shutdown before the standby was promoted).
func (c *Cluster) Follow(ctx context.Context, primary *Cluster) error {
	if c.Running() {
		return fmt.Errorf("follow: %s is running; stop it first", c.Name)
	}
	if err := primary.ensureReplicator(ctx); err != nil {
		return fmt.Errorf("follow %s: %w", primary.Name, err)
	}
	if err := c.standBy(primary); err != nil {
		return err
	}
	c.Primary = primary.Port
	if err := c.save(); err != nil {
		return err
	}
	return c.Start(ctx)
}

// replicatorPassword is Replicator's password: an HMAC of the superuser's
// (which it does not reveal). Empty for a cluster without a password.
func (c *Cluster) replicatorPassword() string {
	if c.Password == "" {
		return ""
	}
	m := hmac.New(sha256.New, []byte(c.Password))
	m.Write([]byte(Replicator))
	return hex.EncodeToString(m.Sum(nil))
}

// ensureReplicator creates (or resets) Replicator on the running cluster c.
// Roles are replicated: every member of the cluster has it.
func (c *Cluster) ensureReplicator(ctx context.Context) error {
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", Replicator).Scan(&exists); err != nil {
		return fmt.Errorf("replication role: %w", err)
	}
	verb := "ALTER"
	if !exists {
		verb = "CREATE"
	}
	var password string
	if err := conn.QueryRow(ctx, "SELECT format('PASSWORD %L', $1::text)", c.replicatorPassword()).Scan(&password); err != nil {
		return fmt.Errorf("replication role: %w", err)
	}
	if _, err := conn.Exec(ctx, verb+" ROLE "+Replicator+" LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE "+password); err != nil {
		return fmt.Errorf("replication role: %w", err)
	}
	return nil
}

// standBy configures c's data directory as a standby of primary: its
// primary_conninfo (as Replicator, with its password: the file is the
// server user's, in a 0700 directory) and standby.signal.
func (c *Cluster) standBy(primary *Cluster) error {
	info := primary.Config("") // a walreceiver names no database
	info.Credential = dbconn.Credential{User: Replicator, Password: primary.replicatorPassword()}
	info.ApplicationName = c.Name
	conninfo := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(info.String())
	f, err := os.OpenFile(filepath.Join(c.DataDir(), "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString("primary_conninfo = '" + conninfo + "'\n")
	f.Close()
	if err != nil {
		return err
	}
	sig := filepath.Join(c.DataDir(), "standby.signal")
	if err := os.WriteFile(sig, nil, 0o600); err != nil {
		return err
	}
	return chownToRunner(sig)
}

// IsPrimary reports whether c was made or promoted a primary (it streams
// from no other cluster).
func (c *Cluster) IsPrimary() bool { return c.Primary == 0 }

func (c *Cluster) postmasterPID() (int, bool) {
	b, err := os.ReadFile(filepath.Join(c.DataDir(), "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	return pid, err == nil && pid > 0
}

func (c *Cluster) logSince(off int64) string {
	f, err := os.Open(c.LogPath())
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(off, 0); err != nil {
		return ""
	}
	b := make([]byte, 8192)
	n, _ := f.Read(b)
	return string(b[:n])
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// A zombie is not alive for our purposes.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func childrenOf(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 2 {
			if pp, _ := strconv.Atoi(f[1]); pp == pid {
				out = append(out, p)
			}
		}
	}
	return out
}

// run executes one of PostgreSQL's programs from BinDir as the runner user.
func (c *Cluster) run(ctx context.Context, prog string, args ...string) (string, error) {
	return c.runEnv(ctx, nil, prog, args...)
}

// runEnv is run with env added to the program's environment.
func (c *Cluster) runEnv(ctx context.Context, env []string, prog string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, prog), args...)
	cmd.Env = append(append(os.Environ(), "LC_ALL=C", "TZ=UTC"), env...)
	cmd.Dir = "/"
	if cred, err := runnerCredential(); err != nil {
		return "", err
	} else if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if u, err := user.LookupId(strconv.Itoa(int(cred.Uid))); err == nil {
			cmd.Env = append(cmd.Env, "HOME="+u.HomeDir, "USER="+u.Username)
		}
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// RunnerUser names the user PostgreSQL runs as: the current user, or when the
// current user is root, $TENANTRY_PG_USER or "postgres".
func RunnerUser() string {
	if os.Geteuid() != 0 {
		if u, err := user.Current(); err == nil {
			return u.Username
		}
		return ""
	}
	if u := os.Getenv("TENANTRY_PG_USER"); u != "" {
		return u
	}
	return "postgres"
}

func runnerCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	name := RunnerUser()
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("running as root: PostgreSQL must run as an unprivileged user and %q does not exist "+
			"(create it with `useradd --system %s`, or set TENANTRY_PG_USER): %w", name, name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// prepareDir creates dir owned by the runner user, and when running as root
// makes sure the runner can reach it through its ancestors.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := chownToRunner(dir); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return nil
	}
	// Ancestors made by root with 0700 (os.MkdirTemp, t.TempDir) are not
	// traversable by the runner; grant search (not read) permission.
	for p := filepath.Dir(dir); p != "/" && p != "."; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, st.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("make %s traversable for %s: %w", p, RunnerUser(), err)
			}
		}
	}
	return nil
}

func chownToRunner(p string) error {
	cred, err := runnerCredential()
	if err != nil || cred == nil {
		return err
	}
	return os.Chown(p, int(cred.Uid), int(cred.Gid))
}
