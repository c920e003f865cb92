package main

import (
	"testing"

	"tenantry/pgtest"
)

// TestMain destroys the PostgreSQL clusters tests of the CLI started.
func TestMain(m *testing.M) { pgtest.Main(m) }
