// Package threads sizes the compute threads of one rank so that the ranks
// sharing a node do not oversubscribe it. It is the one place that decides
// the process-wide thread state: Go's scheduler (GOMAXPROCS, which bounds
// the goroutines running kernels at once) gets the rank's share of the
// cores, and OpenBLAS one thread, because every BLAS and LAPACK call of the
// program runs inside a goroutine that already has a core of its own (the
// flow's CPU backend splits its GEMMs over workers, lgt.Pool runs one
// determinant per worker). The OpenBLAS binding itself is lgt's
// (lgt.SetBLASThreads); nf.CPU and lgt.Pool keep to the same rule when
// used without Configure (in tests and benchmarks).
//
// # The rule
//
// [Configure] gives each rank its share of the CPUs it may run on:
//
//	avail  = CPUs in this process's affinity mask, capped by a cgroup CPU quota
//	          (Go's default GOMAXPROCS)
//	node   = CPUs of the node (or of the cgroup cpuset, in a container)
//	shared = ceil(localSize · avail / node)   ranks that share my CPUs
//	share  = max(1, avail / shared)
//
// Without binding (mpirun --bind-to none, a laptop) every rank sees the
// whole node and gets node/localSize. When the launcher binds each rank to
// its own cores (srun --cpus-per-task=k, mpirun --map-by slot:PE=k), the
// rank gets exactly those k. Binding to a socket with several ranks per
// socket splits the socket. GOMAXPROCS and OPENBLAS_NUM_THREADS in the
// environment override the rule for the goroutines and the BLAS threads
// respectively.
//
// # On a cluster node
//
// With Slurm, ask for the cores per rank and let srun bind them:
//
//	#SBATCH --ntasks-per-node=4 --cpus-per-task=16
//	srun --mpi=pmix --cpu-bind=cores ./nfschwinger params.toml
//
// Each rank then runs 16 goroutines on its own 16 cores. With mpirun, either bind (mpirun -n 4 --map-by slot:PE=16
// --bind-to core) or leave the ranks unbound (--bind-to none), in which case
// the rule splits the node evenly. Do not set OMP_NUM_THREADS-style
// variables to the node's core count; leave them unset or set them per rank.
//
// # GPUs
//
// A rank that uses a GPU picks device LocalRank mod (number of visible
// devices), where LocalRank comes from the communicator (ranks on the same
// node are numbered 0, 1, ...) and the visible devices are those listed in
// CUDA_VISIBLE_DEVICES (all of the node's when unset). With Slurm's
// --gpus-per-task=1 (or --gpu-bind=single:1) each rank sees exactly one
// device and picks device 0; with all devices visible, ranks 0..k-1 of a
// node with k GPUs take one each. A GPU rank needs only a few CPU threads
// (--cpus-per-task=2..8 is plenty).
package threads

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"nfschwinger/lgt"
)

// Plan is the decision of Configure, for the log.
type Plan struct {
	Procs       int    // GOMAXPROCS set for this rank
	BLASThreads int    // OpenBLAS threads set for this rank
	Reason      string // how the numbers were found
}

// String is a one-line description such as
// "4 goroutine threads, 4 BLAS threads (8 CPUs shared by 2 ranks)".
func (p Plan) String() string {
	return fmt.Sprintf("%d goroutine threads, %d BLAS threads (%s)", p.Procs, p.BLASThreads, p.Reason)
}

// Configure sizes this rank's threads for localSize ranks on the node (the
// communicator's LocalSize) as the package documentation describes:
// it sets GOMAXPROCS to the rank's share unless the GOMAXPROCS variable is
// set, and OpenBLAS to one thread unless OPENBLAS_NUM_THREADS is set. Call it once at start-up,
// before any BLAS call. localSize < 1 panics.
func Configure(localSize int) Plan {
	if localSize < 1 {
		panic(fmt.Sprintf("threads: local size %d < 1", localSize))
	}
	avail := runtime.GOMAXPROCS(0) // affinity- and quota-aware unless set by env
	node := nodeCPUs()
	share, reason := Share(avail, node, localSize)
	p := Plan{Procs: share, BLASThreads: 1, Reason: reason}
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		p.Procs = avail
		p.Reason += "; GOMAXPROCS=" + v + " from the environment"
	} else {
		runtime.GOMAXPROCS(share)
	}
	if n, err := strconv.Atoi(os.Getenv("OPENBLAS_NUM_THREADS")); err == nil && n > 0 {
		p.BLASThreads = lgt.BLASThreads() // OpenBLAS read the variable at load
		p.Reason += "; OPENBLAS_NUM_THREADS from the environment"
	} else {
		lgt.SetBLASThreads(1)
		p.BLASThreads = lgt.BLASThreads()
	}
	return p
}

// Share returns the number of threads of one rank that may run on avail
// CPUs of a node with node CPUs shared by localSize ranks, and a reason for
// the log (see the package documentation for the rule). Arguments below 1
// are taken as 1.
func Share(avail, node, localSize int) (int, string) {
	avail, node, localSize = max(avail, 1), max(node, 1), max(localSize, 1)
	if avail > node {
		node = avail // affinity wider than what we think the node has
	}
	shared := min(localSize, (localSize*avail+node-1)/node)
	share := max(1, avail/shared)
	if avail < node && shared == 1 {
		return share, fmt.Sprintf("bound to %d of %d CPUs", avail, node)
	}
	return share, fmt.Sprintf("%d CPUs shared by %d ranks", avail, shared)
}

// nodeCPUs counts the CPUs this process could be given on the node: the
// cgroup's cpuset when one is readable (a container or a Slurm job step),
// else the online CPUs, else runtime.NumCPU.
func nodeCPUs() int {
	for _, path := range cpusetFiles() {
		if b, err := os.ReadFile(path); err == nil {
			if n, err := CountCPUList(string(b)); err == nil && n > 0 {
				return n
			}
		}
	}
	if b, err := os.ReadFile("/sys/devices/system/cpu/online"); err == nil {
		if n, err := CountCPUList(string(b)); err == nil && n > 0 {
			return n
		}
	}
	return runtime.NumCPU()
}

// cpusetFiles lists the candidate files holding this process's cgroup
// cpuset (cgroup v2 first, then v1).
func cpusetFiles() []string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	var files []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// hierarchy-ID:controller-list:cgroup-path
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		switch {
		case f[0] == "0" && f[1] == "":
			files = append(files, filepath.Join("/sys/fs/cgroup", f[2], "cpuset.cpus.effective"))
		case strings.Contains(","+f[1]+",", ",cpuset,"):
			files = append(files, filepath.Join("/sys/fs/cgroup/cpuset", f[2], "cpuset.effective_cpus"))
		}
	}
	return files
}

// CountCPUList counts the CPUs in a Linux CPU list such as "0-3,8,10-11\n"
// (the format of /sys/devices/system/cpu/online and cgroup cpusets).
func CountCPUList(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("threads: CPU list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return 0, fmt.Errorf("threads: CPU list %q: %w", s, err)
			}
		}
		if a < 0 || b < a {
			return 0, fmt.Errorf("threads: CPU list %q: bad range %q", s, part)
		}
		n += b - a + 1
	}
	return n, nil
}
