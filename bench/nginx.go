package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// nginx is a second reference of `bench gateway`, measured when an nginx
// binary is given: nginx with one worker process in front of the same
// backend, keep-alive connections to it, access log off — the reference the
// gateway's goal on a trivial backend was set against, measured here in the
// same rounds instead of taken from another machine. Like the relay it
// passes the client's headers on (the direct side's signed tenant header
// reaches the OMS instances) and authenticates nothing.
type nginx struct {
	cmd  *exec.Cmd
	dir  string
	done chan error
}

// nginxConf is nginx's configuration: one worker, every path under the
// run's directory (prefix), upstream connections kept alive.
const nginxConf = `daemon off;
master_process on;
worker_processes 1;
pid nginx.pid;
error_log error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path tmp/body;
	proxy_temp_path tmp/proxy;
	fastcgi_temp_path tmp/fastcgi;
	uwsgi_temp_path tmp/uwsgi;
	scgi_temp_path tmp/scgi;
	upstream backend {
%s		keepalive 64;
	}
	server {
		listen %s;
		location / {
			proxy_pass http://backend;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
}
`

// startNginx runs binary (an nginx executable) in front of backends
// (http:// URLs) on a free loopback port and returns it with its URL, once
// it answers.
func startNginx(ctx context.Context, binary string, backends []string) (*nginx, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	dir, err := os.MkdirTemp("", "tenantry-bench-nginx-")
	if err != nil {
		return nil, "", err
	}
	var servers strings.Builder
	for _, b := range backends {
		fmt.Fprintf(&servers, "\t\tserver %s;\n", strings.TrimPrefix(b, "http://"))
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err == nil {
		err = os.WriteFile(conf, fmt.Appendf(nil, nginxConf, servers.String(), addr), 0o644)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	var stderr bytes.Buffer
	cmd := exec.Command(binary, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("start nginx %s: %w", binary, err)
	}
	n := &nginx{cmd: cmd, dir: dir, done: make(chan error, 1)}
	go func() { n.done <- cmd.Wait() }()
	url := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return n, url, nil
		}
		select {
		case err := <-n.done:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			os.RemoveAll(dir)
			return nil, "", fmt.Errorf("nginx %s exited (%v): %s%s", binary, err, stderr.String(), log)
		case <-ctx.Done():
			n.close()
			return nil, "", ctx.Err()
		case <-time.After(20 * time.Millisecond): // waiting for its port to accept
		}
		if time.Now().After(deadline) {
			n.close()
			return nil, "", errors.New("nginx did not listen within 10 s")
		}
	}
}

// close stops nginx (SIGQUIT: its workers finish, then exit) and removes
// its directory.
func (n *nginx) close() {
	_ = n.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-n.done:
	case <-time.After(5 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
	os.RemoveAll(n.dir)
}

// nginxVersion is what `binary -v` says of itself ("nginx/1.22.1").
func nginxVersion(binary string) string {
	out, err := exec.Command(binary, "-v").CombinedOutput()
	if err != nil {
		return ""
	}
	_, v, _ := strings.Cut(strings.TrimSpace(string(out)), "version: ")
	return v
}
