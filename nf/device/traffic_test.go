package device

import (
	"fmt"
	"slices"
	"testing"
	"unsafe"

	"nfschwinger/lgt"
	"nfschwinger/nf"
)

// trainerCase is one training step's configuration for the tests of the
// device-resident target: the estimator, the micro-batches of the local
// batch, and REINFORCE's four-pass form.
type trainerCase struct {
	est      nf.Estimator
	nMicro   int
	fourPass bool
}

func (c trainerCase) String() string {
	return fmt.Sprintf("%s_micro%d_four%v", c.est, c.nMicro, c.fourPass)
}

var trainerCases = []trainerCase{{nf.REINFORCE, 1, false}, {nf.REINFORCE, 2, true}, {nf.ReparamTrick, 2, false}, {nf.PathGradient, 2, false}}

// stepResult is what one measured training step gave: the bytes that
// crossed between host and device, the parameter gradient and the
// statistics.
type stepResult struct {
	up, down int64
	grad     []float32
	stats    nf.StepStats
	nParams  int
}

// deviceStep runs one warm-up training step and one measured step of a
// float32 flow on the emulator (L = 4, 2 layers of [8, 8], micro
// configurations a micro-batch) with the action's log det (and force) on
// the device: read from the flow's device buffers (resident: FlowAction)
// or from links the host gives (Action).
func deviceStep(t *testing.T, c trainerCase, micro int, resident bool) stepResult {
	t.Helper()
	em, k := emulator(t)
	f, err := NewFlow[float32](k, arch(4, 2), micro, false, true)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Init(nf.Stream(1, nf.DomainInit, 0, 0))
	pool := lgt.NewPool(lgt.Paper(4), 1)
	defer pool.Close()
	withForce := c.est != nf.REINFORCE
	var target interface {
		nf.Target
		Close()
	}
	if resident {
		target, err = NewFlowAction(pool, f, k, withForce)
	} else {
		target, err = NewAction(pool, k, micro, withForce)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	tr := nf.NewTrainer(f, target, c.est, micro, 1)
	tr.FourPass = c.fourPass
	adam := nf.NewAdam(f.Params.Len(), 1e-3, 0.9, 0.999, 1e-8)
	n := micro * c.nMicro
	var r stepResult
	for step := range 2 {
		u0, d0 := em.Transferred()
		f.Params.ZeroGrad()
		st, err := tr.Step(nf.Local{}, uint64(step), 0, n, n)
		if err != nil {
			t.Fatal(err)
		}
		u1, d1 := em.Transferred()
		r = stepResult{up: u1.Bytes - u0.Bytes, down: d1.Bytes - d0.Bytes, grad: slices.Clone(f.Params.Grad), stats: st, nParams: f.Params.Len()}
		nf.Update(adam, f.Params.Data, f.Params.Grad)
	}
	return r
}

// TestDeviceStepTraffic counts the bytes that cross between host and
// device in one training step of a float32 flow on the device, with the
// action's log det (and force) there too, read from the flow's device
// buffers (FlowAction): the parameters go up once (Trainer.Step fixes
// them) and their gradients come down once; besides them, per
// configuration, at most 3 arrays of links in the flow's precision each
// way (z and x, the reverse passes' φ and z', a zero upstream gradient)
// and a few scalars — no links in float64 and no force. The same step
// with the links given from the host (Action) is logged beside it: it
// sends them up again in float64, and brings the force down and the
// upstream gradient up. Measured at L = 4, 2 layers of [8, 8] (22,792
// bytes of parameters), 4 configurations a micro-batch, in bytes up /
// down, host-given → resident: REINFORCE three-pass 24,872 / 23,400 →
// 23,848 / 23,400; four-pass, 2 micro-batches, 27,976 / 25,096 → 25,928 /
// 25,096; r.t., 2 micro-batches, 26,952 / 26,184 → 23,880 / 24,136; path
// gradient, 2 micro-batches, 28,040 / 27,208 → 24,968 / 24,136. (Before
// the parameters were fixed per step: 96,352 up for the four-pass and
// 49,744 for r.t.; before Flow.LinkGradReverseFromForward the path
// gradient brought the gradients of G's pass down to drop them, 95,584
// down.)
func TestDeviceStepTraffic(t *testing.T) {
	const micro, V = 4, 16
	for _, c := range trainerCases {
		t.Run(c.String(), func(t *testing.T) {
			host, res := deviceStep(t, c, micro, false), deviceStep(t, c, micro, true)
			params := int64(res.nParams) * int64(unsafe.Sizeof(float32(0)))
			perConfig := int64(3*2*V*4 + 64)
			nLocal := int64(micro * c.nMicro)
			t.Logf("bytes up / down: links from the host %d / %d, resident %d / %d; parameters %d bytes",
				host.up, host.down, res.up, res.down, params)
			for _, d := range []struct {
				name  string
				bytes int64
			}{{"up", res.up}, {"down", res.down}} {
				if d.bytes < params || d.bytes-params > nLocal*perConfig {
					t.Errorf("%s: %d bytes, want the %d bytes of the parameters (or their gradients) once and at most %d a configuration besides",
						d.name, d.bytes, params, perConfig)
				}
			}
			if res.up >= host.up {
				t.Errorf("the resident target sends %d bytes up, the host-given links %d: no saving", res.up, host.up)
			}
		})
	}
}

// TestFlowActionMatchesAction: a training step with the target reading
// the flow's device buffers (FlowAction: the links widened on the device,
// the force kept there and the upstream gradient formed there) gives the
// parameter gradient and the statistics of the same step with the links
// given from the host (Action), bit for bit: the same operations on the
// same numbers, in another place.
func TestFlowActionMatchesAction(t *testing.T) {
	for _, c := range trainerCases {
		t.Run(c.String(), func(t *testing.T) {
			host, res := deviceStep(t, c, 3, false), deviceStep(t, c, 3, true)
			if res.stats != host.stats {
				t.Errorf("statistics %+v, with the links from the host %+v", res.stats, host.stats)
			}
			nonzero := false
			for i, g := range res.grad {
				if g != host.grad[i] {
					t.Fatalf("gradient %d: %g, with the links from the host %g", i, g, host.grad[i])
				}
				nonzero = nonzero || g != 0
			}
			if !nonzero {
				t.Error("the gradient is zero")
			}
		})
	}
}

// TestLinkGradReverseFromForward: on the host engine and on the device
// (the emulator), LinkGradReverseFromForward returns the link gradient of
// BackwardReverseFromForward bit for bit and leaves the parameter
// gradients — Params.Grad, and on the device those not yet synced — as
// they were.
func TestLinkGradReverseFromForward(t *testing.T) {
	_, k := emulator(t)
	const B = 3
	dev, err := NewFlow[float32](k, arch(4, 2), B, false, true)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	host, err := nf.NewFlow[float32](arch(4, 2), nf.CPU(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*nf.Flow[float32]{host, dev} {
		t.Run(f.Engine().Name(), func(t *testing.T) {
			f.Init(nf.Stream(1, nf.DomainInit, 0, 0))
			n := B * 2 * 16
			z, x, logJ := make([]float32, n), make([]float32, n), make([]float64, B)
			nf.SamplePrior(z, B, 2, nf.DomainTrain, 0, 0)
			tape := f.NewTape(B)
			gz, glogJ := make([]float32, n), []float64{1, -0.5, 2}
			for i := range gz {
				gz[i] = float32(i%7) - 3
			}
			f.Forward(x, z, logJ, B, tape)
			f.Params.ZeroGrad()
			f.BackwardForward(tape, nil, gz, nil) // gradients pending on the device
			want := make([]float32, n)
			f.BackwardReverseFromForward(tape, want, gz, glogJ)
			f.SyncGrads()
			before := slices.Clone(f.Params.Grad)
			f.Params.ZeroGrad()
			f.BackwardForward(tape, nil, gz, nil)
			got := make([]float32, n)
			f.LinkGradReverseFromForward(tape, got, gz, glogJ)
			f.BackwardReverseFromForward(tape, make([]float32, n), gz, glogJ)
			f.SyncGrads()
			if !slices.Equal(got, want) {
				t.Error("the link gradient differs from BackwardReverseFromForward's")
			}
			if !slices.Equal(f.Params.Grad, before) {
				t.Error("the parameter gradients changed")
			}
		})
	}
}
