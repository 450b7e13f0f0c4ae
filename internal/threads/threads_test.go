package threads

import (
	"os"
	"runtime"
	"testing"

	"nfschwinger/lgt"
)

func TestShare(t *testing.T) {
	tests := []struct {
		name                   string
		avail, node, localSize int
		want                   int
	}{
		{"laptop one rank", 8, 8, 1, 8},
		{"unbound two ranks", 8, 8, 2, 4},
		{"unbound three ranks", 8, 8, 3, 2},
		{"more ranks than cores", 2, 2, 3, 1},
		{"srun cpus-per-task 16", 16, 64, 4, 16},
		{"mpirun bind to core", 1, 64, 8, 1},
		{"two sockets, four ranks bound to sockets", 32, 64, 4, 16},
		{"container cpuset, two ranks", 2, 2, 2, 1},
		{"affinity wider than node count", 8, 4, 2, 4},
		{"zero arguments", 0, 0, 0, 1},
	}
	for _, tt := range tests {
		got, reason := Share(tt.avail, tt.node, tt.localSize)
		if got != tt.want {
			t.Errorf("%s: Share(%d, %d, %d) = %d (%s), want %d", tt.name, tt.avail, tt.node, tt.localSize, got, reason, tt.want)
		}
		// Never oversubscribe the CPUs the rank may use when it is alone on them.
		if tt.avail >= 1 && got > tt.avail {
			t.Errorf("%s: share %d exceeds the %d available CPUs", tt.name, got, tt.avail)
		}
	}
}

func TestCountCPUList(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"0-3\n", 4, false},
		{"0", 1, false},
		{"0-3,8,10-11", 7, false},
		{"", 0, false},
		{"3-1", 0, true},
		{"a-b", 0, true},
		{"0-", 0, true},
	}
	for _, tt := range tests {
		got, err := CountCPUList(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("CountCPUList(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestNodeCPUsAtLeastAffinity(t *testing.T) {
	if n := nodeCPUs(); n < 1 {
		t.Errorf("nodeCPUs() = %d, want >= 1", n)
	}
}

// TestConfigure checks that Configure applies its plan to the Go runtime
// (the rank's share) and to OpenBLAS (one thread) when the environment does
// not override them, and restores the previous settings.
func TestConfigure(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" || os.Getenv("OPENBLAS_NUM_THREADS") != "" {
		t.Skip("GOMAXPROCS or OPENBLAS_NUM_THREADS set in the environment")
	}
	oldProcs, oldBLAS := runtime.GOMAXPROCS(0), lgt.BLASThreads()
	defer func() {
		runtime.GOMAXPROCS(oldProcs)
		lgt.SetBLASThreads(oldBLAS)
	}()
	for _, local := range []int{1, 2, 64} {
		runtime.GOMAXPROCS(oldProcs)
		want, _ := Share(oldProcs, nodeCPUs(), local)
		p := Configure(local)
		if p.Procs != want || runtime.GOMAXPROCS(0) != want {
			t.Errorf("Configure(%d): plan %v, GOMAXPROCS %d; want %d", local, p, runtime.GOMAXPROCS(0), want)
		}
		if p.BLASThreads != 1 || lgt.BLASThreads() != 1 {
			t.Errorf("Configure(%d): plan %v, OpenBLAS threads %d; want 1", local, p, lgt.BLASThreads())
		}
	}
}

func TestConfigurePanicsOnBadSize(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Configure(0) did not panic")
		}
	}()
	Configure(0)
}
