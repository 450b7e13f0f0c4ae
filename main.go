// Command nfschwinger trains normalizing flows for the two-flavour lattice
// Schwinger model and samples it with the trained flow (NMCMC). See README.md.
package main

import (
	"os"

	"nfschwinger/app"
	nfio "nfschwinger/io"
)

func main() {
	nfio.ServeProbe() // a probe child reads one file and exits (before MPI)
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr))
}
