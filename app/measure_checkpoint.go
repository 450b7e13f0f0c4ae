package app

import (
	"errors"
	"fmt"
	"math"
	"os"

	"nfschwinger/internal/h5"
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

// modelGroup returns the group of f that holds a model: "/model" in a
// training checkpoint, the root in a bare weight file (the layout of
// shared/vectors/flow_L8.h5).
func modelGroup(f *h5.File) string {
	if f.Exists(nfio.ModelGroup) {
		return nfio.ModelGroup
	}
	return "/"
}

// archAttrs are the attributes of a model group that hold the
// architecture (io/model.go); they are checked before nfio.ReadArch so that
// a file without a model gets a one-line message.
var archAttrs = []string{"L", "n_layers", "n_knots", "hidden_channels", "kernel_size", "dilation", "masking", "leaky_relu_slope"}

// loadReverseModel reads the model of the checkpoint or weight file path in
// the given precision ("float32" or "float64") and checks that it is made
// for L×L configurations. Every failure is a *UsageError: a missing or
// unreadable file, a model that is not complete, a lattice size that
// differs from the configurations'.
func loadReverseModel(path, precision string, L int, inPath string) (reverseModel, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, usagef("measure: -checkpoint %s: no such file", path)
		}
		return nil, usagef("measure: -checkpoint: %v", err)
	}
	f, err := h5.Open(path)
	if err != nil {
		return nil, usagef("measure: -checkpoint %s: not an HDF5 file", path)
	}
	defer f.Close()
	group := modelGroup(f)
	for _, name := range archAttrs {
		if !h5.HasAttr(f, group, name) {
			return nil, usagef("measure: -checkpoint %s holds no model: no attribute %s on %s (want a checkpoint with /model or a weight file with the architecture as root attributes)", path, name, group)
		}
	}
	arch, err := nfio.ReadArch(f, group)
	if err != nil {
		return nil, usagef("measure: -checkpoint %s holds no usable model: %v", path, err)
	}
	if arch.L != L {
		return nil, usagef("measure: the model in %s is for L = %d, the configurations in %s have L = %d", path, arch.L, inPath, L)
	}
	switch precision {
	case "float32":
		return newFlowModel[float32](f, group, arch, path, precision)
	case "float64":
		return newFlowModel[float64](f, group, arch, path, precision)
	}
	return nil, usagef("measure: -precision %q: want float32 or float64", precision)
}

func newFlowModel[T nf.Float](f *h5.File, group string, arch nf.Arch, path, precision string) (reverseModel, error) {
	flow, err := nf.NewFlow[T](arch, nf.CPU(0))
	if err != nil {
		return nil, usagef("measure: -checkpoint %s: %v", path, err)
	}
	if err := nfio.ReadModelInto(f, group, flow.Params); err != nil {
		return nil, usagef("measure: -checkpoint %s: %v", path, err)
	}
	return &flowModel[T]{flow: flow, density: nf.NewDensity(flow), path: path, precision: precision}, nil
}

// writeModelColumns runs the model on one chunk of links and appends logq
// and z to out; logq and z are scratch of at least the chunk's size.
func writeModelColumns(out *h5.File, m reverseModel, links, logq, z []float64) error {
	m.Reverse(z, logq, links)
	for b, v := range logq {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("log q of configuration %d of the chunk is %v", b, v)
		}
	}
	if err := h5.Append(out, "logq", logq); err != nil {
		return err
	}
	return h5.Append(out, "z", z)
}
