package nfio

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// The HDF5 library can crash (a segmentation fault inside C code, which Go
// cannot turn into an error) or hang on some damaged files. Files that a
// run continues in place — chain.h5 — are therefore first read by a child
// process, the running executable itself started with probeEnv set: if the
// child dies or does not finish, the file is damaged, and the run never
// lets HDF5 parse it in its own process. `analyze` probes history.h5 and
// chain.h5 the same way. (Checkpoints carry a checksum trailer verified
// before HDF5 opens them, and a restart rebuilds history.h5 from the
// checkpoint without reading it, see RestoreHistory.)

// probeEnv names the file a probe child reads ("KIND:PATH").
const probeEnv = "NFSCHWINGER_PROBE"

// probeErrStatus is the exit status of a probe child whose reader returned
// an error (printed on stderr).
const probeErrStatus = 3

// ProbeTimeout bounds a probe: a child that has not finished by then is
// taken to hang on the file.
var ProbeTimeout = 2 * time.Minute

// ErrDamaged reports a file that the HDF5 library cannot read: the reader
// crashed or hung in a probe, or returned an error.
var ErrDamaged = errors.New("damaged file")

// ServeProbe does the work of a probe child and exits when the process was
// started as one (probeEnv set), and returns at once otherwise. Programs
// that call ProbeChain call it first thing in main, before anything else
// (MPI in particular); so do the TestMain functions of test binaries whose
// tests reach ProbeChain.
func ServeProbe() {
	v, ok := os.LookupEnv(probeEnv)
	if !ok {
		return
	}
	kind, path, _ := strings.Cut(v, ":")
	read, ok := probeReaders[kind]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown probe kind %q\n", kind)
		os.Exit(probeErrStatus)
	}
	if err := read(path); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(probeErrStatus)
	}
	os.Exit(0)
}

// probeReaders are the readers a probe child runs, by kind.
var probeReaders = map[string]func(path string) error{
	"chain": readChainWhole,
	"history": func(path string) error {
		_, err := ReadHistory(path)
		return err
	},
}

// readChainWhole reads what continuing the chain at path reads: the
// metadata, every column and, if kept, the last configuration.
func readChainWhole(path string) error {
	d, err := ReadChain(path)
	if err != nil {
		return err
	}
	if d.Meta.SaveConfigs && d.Len() > 0 {
		_, err = ReadChainConfigs(path, d.Len()-1, 1)
	}
	return err
}

// ProbeChain reads the chain file at path in a child process (see
// ServeProbe) and returns nil if it reads, or an error wrapping ErrDamaged
// that says how it failed: the reader's error, a crash of the HDF5 library
// or a hang (no answer within ProbeTimeout). A file locked for writing by
// another open of it is not read: the error wraps ErrInUse instead.
func ProbeChain(path string) error { return probe("chain", path) }

// ProbeHistory reads the history file at path in a child process, as
// ProbeChain does for a chain.
func ProbeHistory(path string) error { return probe("history", path) }

// ErrInUse reports a file that another open of it (another process, as
// a run still writing it) holds locked for writing: the HDF5 library
// locks the files it writes, and a reader cannot open them meanwhile.
var ErrInUse = errors.New("file in use")

// lockedForWriting reports whether another open file description holds
// an exclusive lock on path (flock, as HDF5 takes it for writing).
func lockedForWriting(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	fd := int(f.Fd())
	if err := syscall.Flock(fd, syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(fd, syscall.LOCK_UN)
	return false
}

func probe(kind, path string) error {
	if lockedForWriting(path) {
		return fmt.Errorf("%s: %w: another process has it open for writing (a run still in progress?); try again when it has finished", path, ErrInUse)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("probe %s: %w", path, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ProbeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), probeEnv+"="+kind+":"+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w: reading it did not finish in %v (the HDF5 library hangs on it)", path, ErrDamaged, ProbeTimeout)
	case errors.As(err, &ee) && ee.ExitCode() == probeErrStatus:
		return fmt.Errorf("%s: %w: %s", path, ErrDamaged, strings.TrimSpace(stderr.String()))
	case errors.As(err, &ee) && (ee.ExitCode() < 0 || strings.Contains(stderr.String(), "signal arrived during cgo execution")):
		// Go reports a fatal signal in C code and exits with status 2.
		first, _, _ := strings.Cut(stderr.String(), "\n")
		return fmt.Errorf("%s: %w: the HDF5 library crashed reading it (%v: %s)", path, ErrDamaged, ee, first)
	case errors.As(err, &ee):
		first, _, _ := strings.Cut(stderr.String(), "\n")
		return fmt.Errorf("%s: %w: reading it failed with %v: %s", path, ErrDamaged, ee, first)
	}
	return fmt.Errorf("probe %s: %w", path, err)
}
