package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"tenantry/logrepl"
	"tenantry/move"
	"tenantry/workflow"
)

// TestPrintMove: every line a person reads of a move is plain: copy states
// in words, never more rows copied "of" than the source count shown, the
// pause and its parts in ms, and what complete or cancel purged from which
// alias (issue 16, item 13).
func TestPrintMove(t *testing.T) {
	at := time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)
	promote := move.FlipRecord{Kind: "promote", From: "pool-1", To: "acme-dedicated", At: at, PauseMS: 240.4,
		Phases: map[string]int{"flip": 4, "acks": 21, "fence": 60, "apply": 30, "counts": 5, "sequences": 20}}
	cutback := move.FlipRecord{Kind: "cutback", From: "acme-dedicated", To: "pool-1", At: at, PauseMS: 98,
		Phases: map[string]int{"acks": 12, "fence": 40, "apply": 30, "sequences": 10, "flip": 6}}
	base := move.Data{Tenant: "acme", Source: "pool-1", Target: "acme-dedicated", On: "pool-1",
		SourceRows: map[string]int64{"public.orders": 935, "public.products": 0, "public.customers": 1000}}
	with := func(f func(*move.Info)) *move.Info {
		m := &move.Info{ID: "wf_0123456789abcdef0123", Status: workflow.StatusRunning, Step: "replicate", Data: base}
		f(m)
		return m
	}
	tests := []struct {
		name     string
		move     *move.Info
		want     []string
		wantNone []string
	}{
		{"copying", with(func(m *move.Info) {
			m.Data.Phase = move.PhaseReplicating
			m.Data.Copy = []logrepl.TableSync{{Table: "public.customers", State: logrepl.SyncCopying, Rows: 1200}, {Table: "public.orders", State: logrepl.SyncInit}}
		}), []string{"copy public.customers       copying, 1200 of 1200 rows", "copy public.orders          waiting, 0 of 935 rows"}, []string{"of 1000 rows", " d ", " i "}},
		{"copied under load", with(func(m *move.Info) {
			m.Data.Phase = move.PhaseReady
			m.Step = "ready"
			m.Data.Copy = []logrepl.TableSync{{Table: "public.orders", State: logrepl.SyncReady, Rows: 956}, {Table: "public.products", State: logrepl.SyncReady}}
		}), []string{"copy public.orders          copied, 956 rows", "copy public.products        copied, 0 rows", " move promote acme (or cancel)"},
			[]string{"956 of 935", "956 / 935", " r "}},
		{"promoted", with(func(m *move.Info) {
			m.Step, m.Data.Phase, m.Data.On = "hypercare", move.PhaseHypercare, "acme-dedicated"
			m.Data.Flips = []move.FlipRecord{promote}
			m.Data.Copy = []logrepl.TableSync{{Table: "public.orders", State: logrepl.SyncReady, Rows: 956}}
		}), []string{
			"promote: acme is served from acme-dedicated (was pool-1); paused 240 ms (acks 21 ms, fence 60 ms, apply 30 ms, counts 5 ms, sequences 20 ms, flip 4 ms)",
			"promote pool-1 -> acme-dedicated at 2026-11-30T01:02:03Z: pause 240 ms (acks 21 ms,",
			"its copy on pool-1 is kept in sync, so the flip can be undone",
			" move complete acme (purges the copy on pool-1), or cutback",
		}, []string{"map[", "copy public.orders"}},
		{"link lost in hypercare", with(func(m *move.Info) {
			m.Step, m.Data.Phase, m.Data.On = "relink", move.PhaseHypercare, "acme-dedicated"
			m.Data.Flips = []move.FlipRecord{promote}
			m.Data.LinkDown = "replication link lost: target cluster ded-1 failed over or switched over"
			m.Data.Relinks = []move.Relink{{At: at, Step: "hypercare", Reason: "replication link lost: target cluster ded-1 failed over or switched over",
				Action: "link acme-dedicated -> pool-1 rebuilt with a fresh copy"}}
		}), []string{
			"acme is served from acme-dedicated; its copy on pool-1 is being copied again (the link was lost); cutback is refused until it is in sync",
			"link lost at 2026-11-30T01:02:03Z (in hypercare): replication link lost: target cluster ded-1 failed over or switched over; link acme-dedicated -> pool-1 rebuilt with a fresh copy; not in sync yet",
			"next: wait until the link is in sync (cutback is refused until then)",
		}, []string{"kept in sync", "or cutback"}},
		{"cut back", with(func(m *move.Info) {
			m.Step, m.Data.Phase = "hypercare", move.PhaseHypercare
			m.Data.Flips = []move.FlipRecord{promote, cutback}
		}), []string{
			"cutback: acme is served from pool-1 (was acme-dedicated); paused 98 ms (acks 12 ms, fence 40 ms, apply 30 ms, sequences 10 ms, flip 6 ms)",
			" move complete acme (purges the copy on acme-dedicated), promote again, or cancel",
		}, []string{"map["}},
		{"completed after promote", with(func(m *move.Info) {
			m.Status, m.Step, m.Data.Phase, m.Data.On, m.Data.Purged = workflow.StatusSucceeded, "", move.PhaseDone, "acme-dedicated", 1935
			m.Data.Flips = []move.FlipRecord{promote}
		}), []string{"completed: acme is served from acme-dedicated; its copy on pool-1 was purged (1935 rows) and its role there dropped"},
			[]string{"next:", "lag"}},
		{"completed right after cutback", with(func(m *move.Info) {
			m.Status, m.Step, m.Data.Phase, m.Data.Purged = workflow.StatusSucceeded, "", move.PhaseDone, 1940
			m.Data.Flips = []move.FlipRecord{promote, cutback}
		}), []string{"completed: acme is served from pool-1; its copy on acme-dedicated was purged (1940 rows) and its role there dropped"},
			[]string{"next:"}},
		{"cancelled", with(func(m *move.Info) {
			m.Status, m.Data.Phase, m.Data.Purged = workflow.StatusCancelled, move.PhaseDone, 1935
		}), []string{"cancelled: acme stays on pool-1; its copy on acme-dedicated was purged (1935 rows)"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			printMove(&out, tc.move)
			got := out.String()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("output does not say %q:\n%s", w, got)
				}
			}
			for _, w := range tc.wantNone {
				if strings.Contains(got, w) {
					t.Errorf("output says %q:\n%s", w, got)
				}
			}
			// No line shows more rows "of" a total than the total.
			for _, m := range regexp.MustCompile(`(\d+) of (\d+) rows`).FindAllStringSubmatch(got, -1) {
				if len(m[1]) > len(m[2]) || (len(m[1]) == len(m[2]) && m[1] > m[2]) {
					t.Errorf("%q shows more rows copied than the total", m[0])
				}
			}
		})
	}
}

// TestCopyLabel: a table's progress bar never shows more rows copied than
// its total, and an empty table's bar is done at "0 rows".
func TestCopyLabel(t *testing.T) {
	tests := []struct {
		name           string
		table          logrepl.TableSync
		source         int64
		label          string
		current, total int64
		done           bool
	}{
		{"waiting", logrepl.TableSync{State: logrepl.SyncInit}, 935, "waiting, 0 of 935 rows", 0, 935, false},
		{"copying", logrepl.TableSync{State: logrepl.SyncCopying, Rows: 400}, 935, "copying, 400 of 935 rows", 400, 935, false},
		{"copying more than the source had", logrepl.TableSync{State: logrepl.SyncCopying, Rows: 956}, 935, "copying, 956 of 956 rows", 956, 956, false},
		{"catching up", logrepl.TableSync{State: logrepl.SyncFinished, Rows: 935}, 935, "catching up, 935 of 935 rows", 935, 935, false},
		{"copied", logrepl.TableSync{State: logrepl.SyncReady, Rows: 956}, 935, "copied, 956 rows", 1, 1, true},
		{"empty table copied", logrepl.TableSync{State: logrepl.SyncReady}, 0, "copied, 0 rows", 1, 1, true},
		{"empty table waiting", logrepl.TableSync{State: logrepl.SyncInit}, 0, "waiting, 0 of 0 rows", 0, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			label, current, total, done := copyLabel(tc.table, tc.source)
			if label != tc.label || current != tc.current || total != tc.total || done != tc.done {
				t.Errorf("copyLabel = %q, %d of %d, done %v; want %q, %d of %d, done %v",
					label, current, total, done, tc.label, tc.current, tc.total, tc.done)
			}
		})
	}
}

func TestThings(t *testing.T) {
	for _, tc := range []struct {
		n     int
		thing string
		want  string
	}{{0, "cluster", "0 clusters"}, {1, "cluster", "1 cluster"}, {1, "alias", "1 alias"}, {2, "alias", "2 aliases"}, {3, "router", "3 routers"}} {
		if got := things(tc.n, tc.thing); got != tc.want {
			t.Errorf("things(%d, %q) = %q, want %q", tc.n, tc.thing, got, tc.want)
		}
	}
}
