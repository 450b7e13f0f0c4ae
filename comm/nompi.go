//go:build nompi

package comm

import "errors"

// initMPI is unavailable in a build without MPI (tag nompi).
func initMPI() (Comm, error) {
	return nil, errors.New("this nfschwinger was built without MPI (build tag nompi); rebuild without it or run without a launcher")
}
