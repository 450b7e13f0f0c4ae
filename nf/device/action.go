package device

import (
	"fmt"
	"math"

	"nfschwinger/lgt"
	"nfschwinger/nf/gpu"
)

// Action is the training target (nf.Target) of a flow on the device:
// log|det D| on the device (gpu.LogDet: the Schur complement built there,
// a batched LU) and the gauge action on the host, O(V) per configuration
// — REINFORCE's action, no force —; and, when made withForce (r.t., the
// path gradient), the force dS/dθ on the device too (a batched inverse,
// the neighbour blocks of D⁻¹, the gauge force). Made without, a call
// with the force goes to the host's lgt.Pool. Its errors are lgt's:
// ErrNonFinite for non-finite links or action, ErrSingular for a singular
// D, naming the configuration as the Pool does. Not safe for concurrent
// use.
type Action struct {
	Pool      *lgt.Pool
	ld        *gpu.LogDet
	p         lgt.Params
	logAbs    []float64
	withForce bool
}

// NewAction returns the target of pool's lattice with log det (and with
// withForce the force) on the device of the kernels k, for batches
// processed in pieces of maxB. An error wraps gpu.ErrOutOfMemory when the
// device cannot hold them.
func NewAction(pool *lgt.Pool, k *gpu.Kernels, maxB int, withForce bool) (*Action, error) {
	p := pool.Params()
	ld, err := gpu.NewLogDet(k, p.L, p.Kappa, maxB, withForce)
	if err != nil {
		return nil, fmt.Errorf("log det on the device, micro-batch %d: %w", maxB, err)
	}
	return &Action{Pool: pool, ld: ld, p: p, logAbs: make([]float64, maxB), withForce: withForce}, nil
}

// Close frees the device memory.
func (a *Action) Close() { a.ld.Close() }

// ActionBytes returns the device memory NewAction allocates for L, maxB
// and withForce.
func ActionBytes(L, maxB int, withForce bool) int { return gpu.LogDetBytes(L, maxB, withForce) }

// Action writes S = S_G − 2 log|det D| of the configurations links (B·2V
// angles) into action (B) and, with force (B·2V) not nil, dS/dθ: on the
// device when made withForce, else the Pool's.
func (a *Action) Action(action, force, links []float64) error {
	if force != nil && !a.withForce {
		return a.Pool.Action(action, force, links)
	}
	n := 2 * a.p.V()
	B := len(action)
	if len(links) != B*n {
		panic(fmt.Sprintf("nf/device: Action: links has length %d, want %d·%d", len(links), B, n))
	}
	for b := range B {
		for _, t := range links[b*n : (b+1)*n] {
			if math.IsNaN(t) || math.IsInf(t, 0) {
				return fmt.Errorf("lgt: configuration %d of %d: %w: angle %v in the links", b, B, lgt.ErrNonFinite, t)
			}
		}
	}
	for lo := 0; lo < B; lo += a.ld.MaxB {
		hi := min(B, lo+a.ld.MaxB)
		la := a.logAbs[:hi-lo]
		var err error
		if force != nil {
			err = a.ld.Force(la, force[lo*n:hi*n], links[lo*n:hi*n], a.p.Beta, hi-lo)
		} else {
			err = a.ld.Compute(la, links[lo*n:hi*n], hi-lo)
		}
		if err != nil {
			return fmt.Errorf("action on the device: %w", err)
		}
		for b := lo; b < hi; b++ {
			l := la[b-lo]
			if gpu.Singular(l) {
				return fmt.Errorf("lgt: configuration %d of %d: %w: zero pivot of the Schur complement", b, B, lgt.ErrSingular)
			}
			s := lgt.GaugeAction(links[b*n:(b+1)*n], a.p.L, a.p.Beta) - 2*l
			if math.IsNaN(s) || math.IsInf(s, 0) {
				return fmt.Errorf("lgt: configuration %d of %d: %w: action %v", b, B, lgt.ErrNonFinite, s)
			}
			action[b] = s
		}
	}
	return nil
}
