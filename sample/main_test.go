package sample

import (
	"os"
	"testing"

	nfio "nfschwinger/io"
)

// TestMain serves the probe children that the chain tests start (the test
// binary is the running executable; see nfio.ServeProbe).
func TestMain(m *testing.M) {
	nfio.ServeProbe()
	os.Exit(m.Run())
}
