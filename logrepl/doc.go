// Package logrepl provides the PostgreSQL logical-replication mechanics of
// one tenant's rows between two databases (DESIGN.md, "The move protocol"):
// a publication of the tenant's tables with a row filter on the tenant, a
// replication slot, a subscription on the other side (repl.go); a link made
// with a binary copy of the tenant's rows from the snapshot its slot
// exported, in parallel, then a subscription that starts at the slot
// (copy.go); the initial copy's progress, slot lag and subscription health
// (progress.go); proof
// that the subscriber applied the publisher up to a point, by positions
// (apply.go) or by a marker row (marker.go); sequence bumps (seq.go); the
// link back after a flip, started past what the forward link applied
// (reverse.go); row counts on both sides and the purge of one side's copy
// (rows.go).
//
// The move workflow (package move) is built on it; it knows no workflow,
// registry or placement, so tests and tools can drive a link by hand. The
// tables it is given come from package tenanttable, parents before the
// tables whose foreign keys reference them.
//
// Every function is idempotent: it checks the catalogs first and does
// nothing when the object is already as asked, so a workflow step can be
// re-run after a crash at any point. Every name is validated and quoted;
// tenant ids are checked with registry.ValidateTenantID, and the few string
// literals DDL cannot take as parameters (row filters, connection strings)
// are quoted by quoteLiteral.
package logrepl
