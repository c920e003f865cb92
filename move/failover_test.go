package move

import (
	"errors"
	"fmt"
	"testing"

	"tenantry/logrepl"
)

// TestDiagnose: what a link's state after a failover, a switchover, a lost
// or invalidated slot or a re-addressed publisher means, one row per case.
func TestDiagnose(t *testing.T) {
	src := Primary{Cluster: "pool-1", Member: "pool-1-0", Addr: "127.0.0.1:5432"}
	srcNew := Primary{Cluster: "pool-1", Member: "pool-1-1", Addr: "127.0.0.1:5433"}
	dst := Primary{Cluster: "ded-1", Member: "ded-1-0", Addr: "127.0.0.1:6432"}
	dstNew := Primary{Cluster: "ded-1", Member: "ded-1-1", Addr: "127.0.0.1:6433"}
	fwd := Link{From: "pool", To: "ded", Link: logrepl.Link{Publication: "p", Slot: "s", Subscription: "s"}}
	back := Link{From: "ded", To: "pool", Link: fwd.Link}
	made := map[string]Primary{"pool": src, "ded": dst}
	missing := fmt.Errorf("%w: slot s does not exist", logrepl.ErrSlotLost)
	tests := []struct {
		name        string
		c           linkCheck
		wantErr     error
		wantRepoint bool
	}{
		{"intact", linkCheck{Link: fwd, Made: made, Now: made, SubAddr: src.Addr}, nil, false},
		{"source failed over", linkCheck{Link: fwd, Made: made, Now: map[string]Primary{"pool": srcNew, "ded": dst},
			SlotErr: missing, SubAddr: src.Addr}, ErrLinkLost, false},
		{"target failed over, link back", linkCheck{Link: back, Made: made, Now: map[string]Primary{"pool": src, "ded": dstNew},
			SlotErr: missing, SubAddr: dst.Addr}, ErrLinkLost, false},
		{"subscriber's cluster failed over", linkCheck{Link: fwd, Made: made, Now: map[string]Primary{"pool": src, "ded": dstNew},
			SubAddr: src.Addr}, ErrLinkLost, false},
		{"slot dropped", linkCheck{Link: fwd, Made: made, Now: made, SlotErr: missing, SubAddr: src.Addr}, ErrLinkLost, false},
		{"slot invalidated", linkCheck{Link: fwd, Made: made, Now: made, SlotWALStatus: "lost",
			SlotErr: fmt.Errorf("%w: slot s was invalidated (wal_status lost)", logrepl.ErrSlotLost), SubAddr: src.Addr}, ErrSlotInvalidated, false},
		{"subscription gone", linkCheck{Link: fwd, Made: made, Now: made,
			SubErr: fmt.Errorf("%w: no subscription", logrepl.ErrSubscriptionBroken)}, ErrLinkLost, false},
		{"publisher re-addressed", linkCheck{Link: fwd, Made: made, Now: map[string]Primary{"pool": {Cluster: "pool-1", Member: "pool-1-0", Addr: "10.0.0.1:5432"}, "ded": dst},
			SubAddr: src.Addr}, nil, true},
		{"subscription elsewhere, primaries unknown", linkCheck{Link: fwd, Now: made, SubAddr: "127.0.0.1:9999"}, ErrLinkLost, false},
		{"side unreachable", linkCheck{Link: fwd, Made: made, Now: made, SlotErr: errors.New("connection refused")}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Source = "pool"
			repoint, err := diagnose(tc.c)
			if repoint != tc.wantRepoint {
				t.Errorf("repoint = %v, want %v", repoint, tc.wantRepoint)
			}
			switch {
			case tc.name == "side unreachable":
				if err == nil || errors.Is(err, ErrLinkLost) || errors.Is(err, ErrSlotInvalidated) {
					t.Errorf("err = %v, want the read error as it is", err)
				}
			case tc.wantErr == nil && err != nil:
				t.Errorf("err = %v, want none", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				t.Logf("%v", err)
			}
		})
	}
}
