package bench

import (
	"bufio"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
)

// Where residentMB read the figure.
const (
	rssProc    = "VmRSS of /proc/self/status"
	rssRuntime = "Go runtime: memory mapped minus released to the OS (no /proc)"
)

// residentMB returns this process's resident memory in MiB and where it
// was read: VmRSS on Linux, else the Go runtime's own estimate (which
// misses memory outside the Go heap and stacks).
func residentMB() (float64, string) {
	if kb, ok := procRSSKB(); ok {
		return round2(float64(kb) / 1024), rssProc
	}
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return round2(float64(s[0].Value.Uint64()-s[1].Value.Uint64()) / (1 << 20)), rssRuntime
}

func procRSSKB() (int64, bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// VmRSS:	   12345 kB
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// heapMB returns the bytes of the Go heap's objects (live and not yet
// swept) in MiB.
func heapMB() float64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return round2(float64(s[0].Value.Uint64()) / (1 << 20))
}
