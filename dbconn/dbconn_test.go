package dbconn_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tenantry/dbconn"
)

func TestConfig_String(t *testing.T) {
	c := dbconn.Config{Host: "h", Port: 5432, Database: "d b", Credential: dbconn.Credential{User: "u", Password: `p'w\`},
		TLS: dbconn.TLS{Mode: dbconn.SSLVerifyFull, RootCert: "/etc/ca.pem"}, ConnectTimeout: 3 * time.Second}
	want := `host='h' port='5432' dbname='d b' user='u' password='p\'w\\' sslmode='verify-full' sslrootcert='/etc/ca.pem' connect_timeout='3'`
	if got := c.String(); got != want {
		t.Errorf("String = %s, want %s", got, want)
	}
	if got := c.Redacted(); strings.Contains(got, "password") {
		t.Errorf("Redacted shows the password: %s", got)
	}
	if got := (dbconn.Config{Host: "h", Port: 1, Credential: dbconn.Credential{User: "u"}}).String(); strings.Contains(got, "dbname") ||
		!strings.Contains(got, "sslmode='prefer'") {
		t.Errorf("no database, zero TLS: %s", got)
	}
	if s := c.Credential.String(); strings.Contains(s, "p'w") {
		t.Errorf("Credential.String shows the password: %s", s)
	}
}

func TestConfig_ConnConfig(t *testing.T) {
	c := dbconn.Config{Host: "127.0.0.1", Port: 5433, Database: "db", Credential: dbconn.Credential{User: "u", Password: "p w'"},
		TLS: dbconn.TLS{Mode: dbconn.SSLDisable}}
	cc, err := c.ConnConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cc.Host != "127.0.0.1" || cc.Port != 5433 || cc.Database != "db" || cc.User != "u" || cc.Password != "p w'" || cc.TLSConfig != nil {
		t.Fatalf("conn config %+v", cc)
	}
	c.TLS = dbconn.TLS{Mode: dbconn.SSLRequire}
	if cc, err = c.ConnConfig(); err != nil || cc.TLSConfig == nil {
		t.Fatalf("require: TLS config %v, %v", cc.TLSConfig, err)
	}
}

func TestTLS_Validate(t *testing.T) {
	for _, tc := range []struct {
		tls dbconn.TLS
		ok  bool
	}{
		{dbconn.TLS{}, true},
		{dbconn.TLS{Mode: "disable"}, true},
		{dbconn.TLS{Mode: "require"}, true},
		{dbconn.TLS{Mode: "verify-full", RootCert: "/ca.pem"}, true},
		{dbconn.TLS{Mode: "verify-full"}, false},
		{dbconn.TLS{Mode: "verify-ca"}, false},
		{dbconn.TLS{Mode: "on"}, false},
		{dbconn.TLS{Mode: "require", RootCert: "a\nb"}, false},
	} {
		err := tc.tls.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, dbconn.ErrInvalid)) {
			t.Errorf("%+v: %v, want ok=%v", tc.tls, err, tc.ok)
		}
	}
}

func TestReadCredentialFile(t *testing.T) {
	type Credential = dbconn.Credential
	write := func(t *testing.T, text string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "cred")
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, text string
		mode       os.FileMode
		want       Credential
		errHas     string
	}{
		{name: "ok", text: "# admin\nuser=postgres\npassword= s3cret \n", mode: 0o600, want: Credential{User: "postgres", Password: " s3cret "}},
		{name: "readable by others", text: "user=postgres\npassword=x\n", mode: 0o644, errHas: "readable by others"},
		{name: "no user", text: "password=x\n", mode: 0o600, errHas: "no user= line"},
		{name: "stray line names no secret", text: "user=postgres\nhunter2\n", mode: 0o600, errHas: "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dbconn.ReadCredentialFile(write(t, tc.text, tc.mode))
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) || strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("err = %v, want one mentioning %q and no secret", err, tc.errHas)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
