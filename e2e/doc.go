// Package e2e holds tenantry's end-to-end tests: they build the tenantry
// binary, start one local platform (control cluster and registry, the pooled
// cluster with a standby, the control plane API, OMS stacks as real
// processes and the gateway) and drive it the way clients and operators do,
// under load from package load, judged by package check. The package has no
// code of its own; `go test ./e2e` runs it.
package e2e
