package nfio

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// TestMain serves the probe children of the tests (the test binary is the
// running executable, see ServeProbe), with two extra kinds that stand for
// the HDF5 library crashing and hanging on a file.
func TestMain(m *testing.M) {
	probeReaders["test-crash"] = func(string) error {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	probeReaders["test-hang"] = func(string) error {
		time.Sleep(time.Hour)
		return nil
	}
	ServeProbe()
	os.Exit(m.Run())
}
