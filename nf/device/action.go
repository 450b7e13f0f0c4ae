package device

import (
	"fmt"
	"math"

	"nfschwinger/lgt"
	"nfschwinger/nf"
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
	B := len(action)
	if err := a.checkLinks(links, B); err != nil {
		return err
	}
	n := 2 * a.p.V()
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
		if err := a.total(action[lo:hi], links[lo*n:hi*n], la, lo, B); err != nil {
			return err
		}
	}
	return nil
}

// checkLinks returns lgt.ErrNonFinite, naming the configuration, for a
// non-finite angle among the B configurations links.
func (a *Action) checkLinks(links []float64, B int) error {
	n := 2 * a.p.V()
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
	return nil
}

// total writes S = S_G − 2 log|det D| of configurations lo … of a batch
// of B into action, the gauge action S_G computed here from links, those
// configurations' angles, and logAbs their log|det D| from the device.
func (a *Action) total(action, links, logAbs []float64, lo, B int) error {
	n := 2 * a.p.V()
	for i, l := range logAbs {
		b := lo + i
		if gpu.Singular(l) {
			return fmt.Errorf("lgt: configuration %d of %d: %w: zero pivot of the Schur complement", b, B, lgt.ErrSingular)
		}
		s := lgt.GaugeAction(links[i*n:(i+1)*n], a.p.L, a.p.Beta) - 2*l
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return fmt.Errorf("lgt: configuration %d of %d: %w: action %v", b, B, lgt.ErrNonFinite, s)
		}
		action[i] = s
	}
	return nil
}

// FlowAction is the Action of the configurations a flow on the same
// device produced, read where the flow's last Forward left them
// (nf.ResidentTarget): they are widened to float64 on the device for the
// log det, and the force (r.t., the path gradient) stays there as the
// upstream gradient of the flow's backward pass. Only the log dets, and
// the links the flow returns to the host anyway (the gauge action is
// computed there), cross. As an nf.Target (Action) it is the Action of
// links given on the host. Not safe for concurrent use.
type FlowAction[T nf.Float] struct {
	a     *Action
	flow  *nf.Flow[T]
	g     *gpu.Flow[T]
	force gpu.Force // of the last ActionOfOutput with the force
}

// NewFlowAction returns the target of pool's lattice for the flow f on
// the device of the kernels k (nf/device's NewFlow), for its micro-batch;
// with the force on the device when withForce. An error wraps
// gpu.ErrOutOfMemory when the device cannot hold it.
func NewFlowAction[T nf.Float](pool *lgt.Pool, f *nf.Flow[T], k *gpu.Kernels, withForce bool) (*FlowAction[T], error) {
	g, ok := nf.DeviceOf(f).(*gpu.Flow[T])
	if !ok {
		return nil, fmt.Errorf("nf/device: a flow action needs a flow on the device (engine %s)", f.Engine().Name())
	}
	a, err := NewAction(pool, k, g.MicroBatch(), withForce)
	if err != nil {
		return nil, err
	}
	return &FlowAction[T]{a: a, flow: f, g: g}, nil
}

// Action is the Action of links given on the host (nf.Target).
func (a *FlowAction[T]) Action(action, force, links []float64) error {
	return a.a.Action(action, force, links)
}

// Close frees the device memory.
func (a *FlowAction[T]) Close() { a.a.Close() }

// Flow is the flow whose device buffers the target reads.
func (a *FlowAction[T]) Flow() *nf.Flow[T] { return a.flow }

// ActionOfOutput writes the action of the configurations of the flow's
// last Forward into action, reading them on the device; links are the
// same on the host (float64), for the gauge action and the checks. With
// withForce the force is computed and kept on the device (Upstream).
func (a *FlowAction[T]) ActionOfOutput(action, links []float64, withForce bool) error {
	B := len(action)
	x, ok := a.g.Output()
	if !ok || x.B != B {
		panic(fmt.Sprintf("nf/device: FlowAction.ActionOfOutput: %d configurations, and the flow holds no output of as many", B))
	}
	if withForce && !a.a.withForce {
		panic("nf/device: FlowAction.ActionOfOutput: the force of an action made without it")
	}
	if err := a.a.checkLinks(links, B); err != nil {
		return err
	}
	la := a.a.logAbs[:B]
	var err error
	if withForce {
		a.force, err = a.a.ld.ForceFrom(la, x, a.a.p.Beta)
	} else {
		err = a.a.ld.ComputeFrom(la, x)
	}
	if err != nil {
		return fmt.Errorf("action on the device: %w", err)
	}
	return a.a.total(action, links, la, 0, B)
}

// Upstream makes (g + F)·scale the upstream gradient of the flow's next
// backward pass (nf.ResidentTarget), F the force of the last
// ActionOfOutput.
func (a *FlowAction[T]) Upstream(scale float64, add bool) error {
	return a.g.SetUpstream(a.force, scale, add)
}
