package main

import (
	"errors"
	"fmt"
	"os"

	"tenantry/control"
	"tenantry/platform"
)

// client returns a control plane client from --api and the admin token
// (--token-file or $TENANTRY_TOKEN: never a flag value, which `ps` shows),
// or from the local platform's state file in --data-dir.
func (a *app) client() (*control.Client, error) {
	addr, token := a.apiAddr, os.Getenv("TENANTRY_TOKEN")
	if a.tokenFile != "" {
		t, err := secretFrom(a.tokenFile, "TENANTRY_TOKEN", "--token-file")
		if err != nil {
			return nil, err
		}
		token = t
	}
	if addr == "" || token == "" {
		st, err := platform.ReadState(a.dataDir)
		if errors.Is(err, os.ErrNotExist) {
			return nil, usageErr("no control plane: pass --api and --token-file (or $TENANTRY_API, $TENANTRY_TOKEN), or run `tenantry up` in data dir %s first", a.dataDir)
		}
		if err != nil {
			return nil, err
		}
		if addr == "" {
			addr = st.APIURL
		}
		if token == "" {
			token = st.AdminToken
		}
		if addr == "" {
			return nil, fmt.Errorf("the platform in %s is not running: start it with `tenantry up`", a.dataDir)
		}
	}
	return &control.Client{BaseURL: addr, Token: token}, nil
}
