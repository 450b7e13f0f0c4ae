package app

import (
	"errors"
	"fmt"
	"os"

	nfio "nfschwinger/io"
	"nfschwinger/nf"
)

// reverseModel computes, for a chunk of configurations, log q(φ) through the
// reverse flow and the reverse image z = f⁻¹(φ). It is the part of
// `measure -checkpoint` that depends on the precision.
type reverseModel interface {
	// Reverse writes z (len B·2V, angles in [0, 2π)) and logq (len B) for
	// the B configurations of links (len B·2V, float64 angles).
	Reverse(z, logq, links []float64)
	// Describe is a one-line description of the model for logs and the
	// output's attributes.
	Describe() string
}

// flowModel is reverseModel for a flow in precision T (nf.Density.LogQ:
// links are rounded to T, the flow runs in T, log J is summed in float64).
type flowModel[T nf.Float] struct {
	flow      *nf.Flow[T]
	density   *nf.Density[T]
	path      string
	precision string
}

func (m *flowModel[T]) Reverse(z, logq, links []float64) { m.density.LogQ(logq, z, links) }

func (m *flowModel[T]) Describe() string {
	a := m.flow.Arch
	return fmt.Sprintf("%s: flow with %d layers, L = %d, %d knots, hidden channels %v, in %s",
		m.path, a.NLayers, a.L, a.NKnots, a.Hidden, m.precision)
}

// loadReverseModel reads the model of the checkpoint or weight file path in
// the given precision ("float32" or "float64") and checks that it is made
// for L×L configurations. Every failure is a *UsageError: a missing or
// unreadable file, a model that is not complete, a lattice size that
// differs from the configurations'.
func loadReverseModel(path, precision string, L int, inPath string) (reverseModel, error) {
	m, err := nfio.OpenModelFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, usagef("measure: -checkpoint %s: no such file", path)
	case errors.Is(err, nfio.ErrNotHDF5):
		return nil, usagef("measure: -checkpoint %s: not an HDF5 file", path)
	case errors.Is(err, nfio.ErrNoModel):
		return nil, usagef("measure: -checkpoint %v", err)
	case err != nil:
		return nil, usagef("measure: -checkpoint: %v", err)
	}
	defer m.Close()
	arch := m.Arch
	if arch.L != L {
		return nil, usagef("measure: the model in %s is for L = %d, the configurations in %s have L = %d", path, arch.L, inPath, L)
	}
	switch precision {
	case "float32":
		return newFlowModel[float32](m, path, precision)
	case "float64":
		return newFlowModel[float64](m, path, precision)
	}
	return nil, usagef("measure: -precision %q: want float32 or float64", precision)
}

func newFlowModel[T nf.Float](m *nfio.ModelFile, path, precision string) (reverseModel, error) {
	flow, err := newFlow[T](m.Arch, "float32", "auto", nil)
	if err != nil {
		return nil, fmt.Errorf("measure: -checkpoint %s: %w", path, err)
	}
	if err := nfio.ReadModelFile(m, flow.Params); err != nil {
		return nil, usagef("measure: -checkpoint %s: %v", path, err)
	}
	return &flowModel[T]{flow: flow, density: nf.NewDensity(flow), path: path, precision: precision}, nil
}
