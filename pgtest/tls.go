package pgtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"tenantry/localpg"
)

// MustTLSCluster starts a private cluster that serves TLS with a
// certificate for 127.0.0.1 signed by a CA made for this test, and returns
// it with the CA's certificate file (for sslmode verify-full). The files
// are readable by the server's user; the key only by it.
func MustTLSCluster(tb testing.TB, name string) (*localpg.Cluster, string) {
	tb.Helper()
	mu.Lock()
	dir := filepath.Join(base(tb), "tls-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	mu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	ca, caKey := mustCert(tb, nil, nil, true)
	srv, srvKey := mustCert(tb, ca, caKey, false)
	caFile, certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{{caFile, "CERTIFICATE", ca.Raw, 0o644}, {certFile, "CERTIFICATE", srv.Raw, 0o644}, {keyFile, "EC PRIVATE KEY", keyDER, 0o600}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			tb.Fatal(err)
		}
		if os.Geteuid() == 0 { // the server runs as the runner user and must own its key
			u, err := user.Lookup(localpg.RunnerUser())
			if err != nil {
				tb.Fatal(err)
			}
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			if err := os.Chown(f.path, uid, gid); err != nil {
				tb.Fatal(err)
			}
		}
	}
	c := MustNewClusterWith(tb, name, map[string]string{"ssl": "on",
		"ssl_cert_file": "'" + certFile + "'", "ssl_key_file": "'" + keyFile + "'"})
	return c, caFile
}

// mustCert makes a CA (parent nil) or a server certificate for 127.0.0.1
// signed by parent.
func mustCert(tb testing.TB, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "tenantry test server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if isCA {
		tmpl.Subject.CommonName = "tenantry test CA"
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign
		tmpl.IPAddresses, tmpl.ExtKeyUsage = nil, nil
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return cert, key
}
