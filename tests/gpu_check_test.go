package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rehearsalLimit is how long the packed device check may take on a machine
// without a CUDA driver: it must say so and finish, not hang.
const rehearsalLimit = 60 * time.Second

// TestGPUCheckRehearsal builds the device check as `make gpu-check` does and
// runs it in what the GPU machine has and no more: a minimal root (chroot in
// a mount namespace of its own) of the packed folder, bash, tar, xz and the
// C library the binaries link, so no Go, no g++, no OpenBLAS, no CUDA. It
// must end within rehearsalLimit with exit status 1, one line saying there
// is no CUDA driver, every other test skipped or passed (the emulator's own
// tests skipped, not failed: the GPU machine has no g++ for it), its report
// and its JSON lines in the output folder; the folder under 64 MiB; and the
// packed nfschwinger must run there through its own loader and libraries.
// It needs root (CI runs as root) for chroot and mount.
func TestGPUCheckRehearsal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the device check")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a minimal root (chroot, mount); CI runs as root")
	}
	for _, tool := range []string{"unshare", "chroot", "mknod", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
	}
	root := buildRehearsalRoot(t)

	// The packed nfschwinger runs on nothing but what it carries.
	params, err := os.ReadFile("../params.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "tmp", "params.toml"), params, 0o644); err != nil {
		t.Fatal(err)
	}
	out, status, _ := runInRoot(t, root, 30*time.Second, "cd /tmp && tar -xJf /check/bench.tar.xz && bench/lib/ld-linux-x86-64.so.2 --library-path /tmp/bench/lib bench/nfschwinger check params.toml")
	if status != 0 || !strings.Contains(out, "params.toml: valid") {
		t.Errorf("the packed nfschwinger in the minimal root: exit %d\n%s", status, out)
	}
	for _, lib := range []string{"libc.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1", "libm.so.6", "ld-linux-x86-64.so.2"} {
		if _, err := os.Stat(filepath.Join(root, "tmp", "bench", "lib", lib)); err != nil {
			t.Errorf("bench.tar.xz lacks %s, which CUDA's libraries load from the same glibc", lib)
		}
	}

	// The check itself, without a driver.
	out, status, took := runInRoot(t, root, rehearsalLimit, "bash /check/run.sh /out")
	report, err := os.ReadFile(filepath.Join(root, "out", "gpu-check.txt"))
	if err != nil {
		t.Fatalf("no report in the output folder: %v\n%s", err, out)
	}
	if took > rehearsalLimit {
		t.Errorf("the check took %s, more than %s", took.Round(time.Second), rehearsalLimit)
	}
	if status != 1 {
		t.Errorf("exit status %d, want 1 (no device)", status)
	}
	checkRehearsalReport(t, string(report), filepath.Join(root, "out", "results.jsonl"))
}

// buildRehearsalRoot makes the check with make gpu-check into a minimal
// root (chroot) of its own: the packed folder at /check, bash, dirname,
// tar and xz with the libraries they and the test binaries link, /tmp,
// /dev/null, /proc (mounted by runInRoot) and /out; no Go, g++, OpenBLAS
// or CUDA. It returns the root.
func buildRehearsalRoot(t *testing.T) (root string) {
	t.Helper()
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		if out, err := exec.Command(sc, "gpu-check.sh", "gpu-libs.sh").CombinedOutput(); err != nil {
			t.Errorf("shellcheck: %v\n%s", err, out)
		}
	}
	root = t.TempDir()
	check := filepath.Join(root, "check")
	build := exec.Command("make", "-C", "..", "gpu-check", "GPU_CHECK="+check)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make gpu-check: %v\n%s", err, out)
	}
	if size := dirSize(t, check); size >= 64<<20 {
		t.Errorf("the check folder has %d MiB, the carried folder may have at most 64", size>>20)
	}
	tools := []string{"/bin/bash", "/usr/bin/dirname", "/bin/tar", "/usr/bin/xz"}
	for _, p := range append(tools, filepath.Join(check, "cuda.test"), filepath.Join(check, "gpucheck")) {
		copyWithLibs(t, root, p)
	}
	for _, d := range []string{"tmp", "proc", "dev", "out"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o1777); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("mknod", "-m", "666", filepath.Join(root, "dev", "null"), "c", "1", "3").CombinedOutput(); err != nil {
		t.Fatalf("mknod: %v\n%s", err, out)
	}
	for _, absent := range []string{"usr/bin/g++", "usr/local/go", "usr/lib/x86_64-linux-gnu/libopenblas.so.0", "usr/bin/nvidia-smi"} {
		if _, err := os.Stat(filepath.Join(root, absent)); err == nil {
			t.Fatalf("the minimal root has %s", absent)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "lib/x86_64-linux-gnu/libopenblas.so.0")); err == nil {
		t.Fatal("the minimal root has libopenblas")
	}
	return root
}

// runInRoot runs the bash script in the minimal root, in a mount namespace
// of its own with /proc mounted, and returns its output, exit status and
// duration; it fails the test if it outlives limit by 30 s.
func runInRoot(t *testing.T, root string, limit time.Duration, script string) (string, int, time.Duration) {
	t.Helper()
	cmd := exec.Command("unshare", "--mount", "--fork", "--", "/bin/sh", "-c",
		fmt.Sprintf("mount -t proc proc %s/proc && exec chroot %s /bin/bash -c '%s'", root, root, script))
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp", "TMPDIR=/tmp"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(limit + 30*time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%q did not end within %s:\n%s", script, limit+30*time.Second, out.String())
	}
	status := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		status = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), status, time.Since(start)
}

// checkRehearsalReport checks the report of a check without a driver: one
// line saying so, TestDriverLoads the only failure, the emulator's own
// tests skipped, the machine described, the verdict, and a JSON line per
// test in resultsPath.
func checkRehearsalReport(t *testing.T, report, resultsPath string) {
	t.Helper()
	var noDriver, emulatorSkips, fails []string
	sc := bufio.NewScanner(strings.NewReader(report))
	prev := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "gpu-check: no CUDA driver"):
			noDriver = append(noDriver, line)
		case strings.HasPrefix(strings.TrimSpace(line), "--- FAIL"):
			fails = append(fails, line)
		case strings.HasPrefix(strings.TrimSpace(line), "--- SKIP") && strings.Contains(prev, "a test of the emulator"):
			emulatorSkips = append(emulatorSkips, line)
		}
		prev = line
	}
	if len(noDriver) != 1 || !strings.Contains(noDriver[0], "driver does not load") {
		t.Errorf("want one line saying there is no CUDA driver, got %q", noDriver)
	}
	if len(fails) != 1 || !strings.Contains(fails[0], "TestDriverLoads") {
		t.Errorf("want TestDriverLoads as the only failure, got %q", fails)
	}
	if len(emulatorSkips) < 2 {
		t.Errorf("the emulator's own tests (TestCompileCache, TestMappedLibraries) did not skip: %q", emulatorSkips)
	}
	if !strings.Contains(report, "nvidia-smi: not found") || !strings.Contains(report, "gpu-check: exit status 1") {
		t.Errorf("report lacks the machine's description or the verdict")
	}
	results, err := os.ReadFile(resultsPath)
	if err != nil {
		t.Fatal(err)
	}
	tests := 0
	for _, line := range strings.Split(strings.TrimSpace(string(results)), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("results.jsonl: %q: %v", line, err)
		}
		if _, ok := r["test"]; ok {
			tests++
		}
	}
	if tests < 20 {
		t.Errorf("results.jsonl records %d tests, want every test of both binaries", tests)
	}
	if t.Failed() {
		t.Logf("report:\n%s", report)
	}
}

// dirSize returns the bytes of the files under dir.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// copyWithLibs copies the program at path into root at the same path
// (unless it is already under root) with every shared library ldd lists
// for it, the loader included, at their paths.
func copyWithLibs(t *testing.T, root, path string) {
	t.Helper()
	files := []string{}
	if !strings.HasPrefix(path, root+"/") {
		files = append(files, path)
	}
	out, err := exec.Command("ldd", path).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "not a dynamic executable") {
		t.Fatalf("ldd %s: %v", path, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			files = append(files, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			files = append(files, f[0])
		}
	}
	for _, src := range files {
		dst := filepath.Join(root, src)
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-L", src, dst).CombinedOutput(); err != nil {
			t.Fatalf("cp %s: %v\n%s", src, err, out)
		}
	}
}
