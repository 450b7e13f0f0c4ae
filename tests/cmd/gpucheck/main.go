// Command gpucheck runs the device check on a GPU machine: the test
// binaries and benchmarks that `make gpu-check` packed beside it, in two
// stages, every step under a time limit, each test in a process of its own
// (a kernel's memory fault poisons the CUDA context of its process, so it
// must not take the tests after it along). It needs nothing but the CUDA
// driver, NVRTC and cuBLAS: no Go, no Debian libraries.
//
//	gpucheck OUTDIR
//
// The smoke stage (at most 2 minutes) prints the machine (nvidia-smi, nvcc
// --version), checks that the driver and the libraries load and which
// files they are (TestDriverLoads), then runs one kernel, one GEMM and one
// parity case. The full stage runs every test, the small ones once more
// under compute-sanitizer's memcheck where it exists, the benchmarks and
// `nfschwinger bench`. Without a driver the check says so in one line, runs
// the tests (which skip) and exits 1. The text report goes to stdout and
// OUTDIR/gpu-check.txt, one JSON object per step, test and benchmark to
// OUTDIR/results.jsonl. Exit status: 0 all passed, 1 otherwise.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Limits of the check: the whole, the smoke stage, one step.
const (
	totalBudget = 8 * time.Minute
	smokeBudget = 2 * time.Minute
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gpucheck OUTDIR")
		os.Exit(2)
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gpucheck:", err)
		os.Exit(1)
	}
	c, err := newCheck(filepath.Dir(exe), os.Args[1], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gpucheck:", err)
		os.Exit(1)
	}
	os.Exit(c.run())
}

// check is one run of the device check.
type check struct {
	here     string    // the folder of the packed check
	report   io.Writer // stdout and gpu-check.txt
	results  *json.Encoder
	files    []*os.File
	env      []string
	cache    string          // the NVRTC cache of every step, removed at the end
	ldPath   string          // LD_LIBRARY_PATH of the steps
	ran      map[string]bool // tests already run, by binary and name
	deadline time.Time
	failed   bool
}

func newCheck(here, out string, stdout io.Writer) (*check, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	txt, err := os.Create(filepath.Join(out, "gpu-check.txt"))
	if err != nil {
		return nil, err
	}
	js, err := os.Create(filepath.Join(out, "results.jsonl"))
	if err != nil {
		return nil, err
	}
	cache, err := os.MkdirTemp("", "gpucheck-cache-")
	if err != nil {
		return nil, err
	}
	c := &check{here: here, report: io.MultiWriter(stdout, txt), results: json.NewEncoder(js),
		files: []*os.File{txt, js}, cache: cache, ran: map[string]bool{}, deadline: time.Now().Add(totalBudget)}
	c.ldPath = searchPath(append(cudaLibDirs(), filepath.SplitList(os.Getenv("LD_LIBRARY_PATH"))...)...)
	c.env = append(os.Environ(),
		"NFSCHWINGER_CUDA_TEST=gpu",
		"NFSCHWINGER_CUDA_CACHE="+cache, // one NVRTC cache for every step
		"NFSCHWINGER_GPU_REFERENCE="+filepath.Join(here, "reference.gob"),
		"NFSCHWINGER_GPU_SPECS="+filepath.Join(here, "specs.gob"),
		"NFSCHWINGER_GPU_LOGDET="+filepath.Join(here, "logdet.gob"),
		"LD_LIBRARY_PATH="+c.ldPath)
	return c, nil
}

// cudaLibDirs returns the folders of a CUDA toolkit's libraries that exist
// on this machine, for the loader's search path: ld.so.cache does not
// always list NVRTC and cuBLAS.
func cudaLibDirs() []string {
	var dirs []string
	for _, pattern := range []string{"/usr/local/cuda/lib64", "/usr/local/cuda/targets/*-linux/lib", "/usr/local/cuda-*/lib64"} {
		m, _ := filepath.Glob(pattern)
		for _, d := range m {
			if fi, err := os.Stat(d); err == nil && fi.IsDir() {
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}

// searchPath joins folders into a loader search path, leaving out empty
// ones: the loader reads an empty entry as the current folder.
func searchPath(dirs ...string) string {
	return strings.Join(slices.DeleteFunc(dirs, func(d string) bool { return d == "" }), ":")
}

// printf writes to the report.
func (c *check) printf(format string, args ...any) { fmt.Fprintf(c.report, format, args...) }

// record writes one JSON line of results.
func (c *check) record(v map[string]any) {
	if err := c.results.Encode(v); err != nil {
		c.printf("gpucheck: results.jsonl: %v\n", err)
	}
}

func (c *check) run() int {
	defer func() {
		for _, f := range c.files {
			f.Close()
		}
		os.RemoveAll(c.cache)
	}()
	c.printf("# nfschwinger gpu-check, %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	smokeEnd := time.Now().Add(smokeBudget)
	c.tool("nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv")
	c.tool("nvcc", "--version")
	c.printf("LD_LIBRARY_PATH=%s\n", c.ldPath)
	driver := c.tests("smoke", "cuda.test", "^TestDriverLoads$", false, smokeEnd)
	if !driver.ok {
		c.printf("gpu-check: no CUDA driver or device: %s\n", driver.reason)
		// The tests still run: without a device each must skip, not fail.
		c.tests("no-device", "cuda.test", ".", false, c.deadline)
		c.tests("no-device", "gpu.test", ".", false, c.deadline)
		return c.finish()
	}
	c.tests("smoke", "cuda.test", "^(TestKernels|TestGemm)$", false, smokeEnd)
	c.tests("smoke", "gpu.test", "^TestFlowAgainstReference$", true, smokeEnd)
	c.printf("smoke stage done in %s\n", time.Since(smokeEnd.Add(-smokeBudget)).Round(time.Second))

	c.tests("full", "cuda.test", ".", false, c.deadline)
	c.tests("full", "gpu.test", ".", false, c.deadline)
	if sanitizer, err := exec.LookPath("compute-sanitizer"); err == nil {
		c.step("memcheck", "compute-sanitizer", c.deadline, 2*time.Minute, sanitizer, "--tool", "memcheck", "--error-exitcode", "1",
			filepath.Join(c.here, "gpu.test"), "-test.v", "-test.short", "-test.run", "^(TestFlowAgainstReference|TestConvDirect)$")
	} else {
		c.printf("compute-sanitizer not found: no memcheck\n")
	}
	for _, b := range []struct {
		name, times string
		limit       time.Duration
	}{{"Conv", "20x", 90 * time.Second}, {"FlowStep", "5x", 2 * time.Minute}, {"LogDet", "3x", 2 * time.Minute}} {
		c.step("benchmark", b.name, c.deadline, b.limit, filepath.Join(c.here, "gpu.test"), "-test.run", "^$",
			"-test.bench", "^Benchmark"+b.name+"$", "-test.benchtime", b.times, "-test.timeout", b.limit.String())
	}
	c.bench()
	return c.finish()
}

// finish prints the verdict and returns the exit status.
func (c *check) finish() int {
	status := 0
	if c.failed {
		status = 1
	}
	c.record(map[string]any{"verdict": map[bool]string{false: "pass", true: "fail"}[c.failed], "exit": status})
	c.printf("gpu-check: exit status %d\n", status)
	return status
}

// tool prints the output of a program of the machine, or that it is
// missing.
func (c *check) tool(name string, args ...string) {
	path, err := exec.LookPath(name)
	if err != nil {
		c.printf("%s: not found\n", name)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	c.printf("$ %s %s\n%s", name, strings.Join(args, " "), out)
	if err != nil {
		c.printf("%s: %v\n", name, err)
	}
}

// testsResult is what a tests step found.
type testsResult struct {
	ok     bool
	reason string // the first failure's first message line
}

// tests runs the tests of bin matching pattern that have not run yet, each
// in a process of its own (short: with -test.short), and records every
// result.
func (c *check) tests(stage, bin, pattern string, short bool, until time.Time) testsResult {
	path := filepath.Join(c.here, bin)
	var list bytes.Buffer
	res := c.exec(stage, bin+" -test.list", until, 30*time.Second, &list, path, "-test.list", pattern)
	if res.err != nil {
		c.failed = true
		c.printf("%s: cannot list its tests: %v\n%s", bin, res.err, list.String())
		return testsResult{reason: res.err.Error()}
	}
	out := testsResult{ok: true}
	for _, name := range strings.Fields(list.String()) {
		if !strings.HasPrefix(name, "Test") || c.ran[bin+" "+name] {
			continue
		}
		c.ran[bin+" "+name] = true
		args := []string{path, "-test.v", "-test.count=1", "-test.timeout", "4m", "-test.run", "^" + name + "$"}
		if short {
			args = append(args, "-test.short")
		}
		r := c.step(stage, bin+" "+name, until, 4*time.Minute, args...)
		if !r.ok && out.ok {
			out = testsResult{reason: r.reason}
		}
	}
	return out
}

// stepResult is the outcome of one process.
type stepResult struct {
	ok     bool
	reason string
	err    error
}

// step runs one process under the smaller of limit and the time left to
// until, copies its output into the report, records its tests and
// benchmarks, and marks the check failed when it fails.
func (c *check) step(stage, name string, until time.Time, limit time.Duration, argv ...string) stepResult {
	var out bytes.Buffer
	c.printf("## %s: %s\n", stage, name)
	r := c.exec(stage, name, until, limit, &out, argv...)
	c.report.Write(out.Bytes())
	reason := ""
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	var last string
	for sc.Scan() {
		line := sc.Text()
		if m := testLine.FindStringSubmatch(line); m != nil {
			secs, _ := strconv.ParseFloat(m[3], 64)
			c.record(map[string]any{"stage": stage, "test": m[2], "result": strings.ToLower(m[1]), "seconds": secs})
			if m[1] == "FAIL" && reason == "" {
				reason = strings.TrimSpace(last)
			}
		} else if b, ok := parseBenchmark(line); ok {
			b["stage"] = stage
			c.record(b)
		} else if strings.HasPrefix(line, "{") {
			var row map[string]any // nfschwinger bench -json: one object per row
			if json.Unmarshal([]byte(line), &row) == nil {
				c.record(map[string]any{"stage": stage, "bench": row})
			}
		}
		if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "=== ") {
			last = line
		}
	}
	if r.err != nil {
		c.failed = true
		if reason == "" {
			reason = r.err.Error()
		}
		c.printf("%s: %v\n", name, r.err)
		return stepResult{reason: reason, err: r.err}
	}
	return stepResult{ok: true}
}

// exec runs argv with the check's environment in its own process group,
// killed (the whole group) when the limit passes, and records the step.
func (c *check) exec(stage, name string, until time.Time, limit time.Duration, out *bytes.Buffer, argv ...string) stepResult {
	if left := time.Until(until); left < limit {
		limit = left
	}
	rec := map[string]any{"stage": stage, "step": name}
	if limit < time.Second {
		err := errors.New("no time left in the check's budget")
		rec["error"] = err.Error()
		c.record(rec)
		return stepResult{err: err}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = c.env, c.here
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	err := cmd.Start()
	timedOut := false
	if err == nil {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-time.After(limit):
			timedOut = true
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			err = fmt.Errorf("killed after its limit of %s", limit.Round(time.Second))
		}
	}
	rec["seconds"] = time.Since(start).Seconds()
	rec["timed_out"] = timedOut
	rec["exit"] = cmd.ProcessState.ExitCode()
	if err != nil {
		rec["error"] = err.Error()
	}
	c.record(rec)
	return stepResult{ok: err == nil, err: err}
}

// bench runs `nfschwinger bench` on the device with the Debian libraries
// packed beside it (bench.tar.xz), through their own loader.
func (c *check) bench() {
	dir, err := os.MkdirTemp("", "gpucheck-bench-")
	if err != nil {
		c.failed = true
		c.printf("bench: %v\n", err)
		return
	}
	defer os.RemoveAll(dir)
	if r := c.step("bench", "unpack bench.tar.xz", c.deadline, time.Minute, "tar", "-C", dir, "-xJf", filepath.Join(c.here, "bench.tar.xz")); !r.ok {
		return
	}
	b := filepath.Join(dir, "bench")
	libs := searchPath(filepath.Join(b, "lib"), c.ldPath)
	// The host's action per configuration (LAPACK, even–odd and dense) on
	// this machine's CPU, beside BenchmarkLogDet's device times: the
	// choice of where the log det runs is made on the numbers of one run.
	c.step("bench", "host action per configuration (LAPACK)", c.deadline, 90*time.Second,
		filepath.Join(b, "lib", "ld-linux-x86-64.so.2"), "--library-path", libs, filepath.Join(b, "nfschwinger"), "bench",
		"-L", "16,24", "-estimators", "reinforce", "-batch", "8", "-micro-batch", "8", "-layers", "1",
		"-steps", "1", "-warmup", "0", "-conv-engine", "openblas", "-action=true", "-json")
	for _, batch := range []string{"512", "1536"} {
		c.step("bench", "nfschwinger bench, REINFORCE, batch "+batch, c.deadline, 2*time.Minute,
			filepath.Join(b, "lib", "ld-linux-x86-64.so.2"), "--library-path", libs, filepath.Join(b, "nfschwinger"), "bench",
			"-L", "8,16,24", "-estimators", "reinforce", "-batch", batch, "-micro-batch", batch, "-layers", "48",
			"-steps", "2", "-warmup", "1", "-conv-engine", "cuda", "-conv-precision", "float32,bf16", "-action=false", "-json")
	}
}

// testLine matches a test's result line of `go test -v`.
var testLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([0-9.]+)s\)`)

// benchLine matches a benchmark's result line: name, iterations, then
// value–unit pairs.
var benchLine = regexp.MustCompile(`^(Benchmark\S+)\s+(\d+)\s+(.+)$`)

// parseBenchmark returns the JSON record of a benchmark result line.
func parseBenchmark(line string) (map[string]any, bool) {
	m := benchLine.FindStringSubmatch(line)
	if m == nil {
		return nil, false
	}
	n, _ := strconv.Atoi(m[2])
	f := strings.Fields(m[3])
	if len(f) < 2 || len(f)%2 != 0 {
		return nil, false
	}
	metrics := map[string]float64{}
	for i := 0; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return nil, false
		}
		metrics[f[i+1]] = v
	}
	return map[string]any{"benchmark": m[1], "iterations": n, "metrics": metrics}, true
}
