package device

import (
	"fmt"
	"testing"
	"unsafe"

	"nfschwinger/lgt"
	"nfschwinger/nf"
)

// stepTraffic runs one warm-up training step and one measured step of a
// float32 flow and its target on the emulator, REINFORCE or r.t. with
// nMicro micro-batches of micro configurations (L = 4, 2 layers), and
// returns what crossed between host and device in the measured step, and
// the number of parameters.
func stepTraffic(t *testing.T, est nf.Estimator, micro, nMicro int, fourPass bool) (up, down int64, nParams int) {
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
	target, err := NewAction(pool, k, micro, est != nf.REINFORCE)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	tr := nf.NewTrainer(f, target, est, micro, 1)
	tr.FourPass = fourPass
	adam := nf.NewAdam(f.Params.Len(), 1e-3, 0.9, 0.999, 1e-8)
	n := micro * nMicro
	for step := range 2 {
		u0, d0 := em.Transferred()
		f.Params.ZeroGrad()
		if _, err := tr.Step(nf.Local{}, uint64(step), 0, n, n); err != nil {
			t.Fatal(err)
		}
		nf.Update(adam, f.Params.Data, f.Params.Grad)
		u1, d1 := em.Transferred()
		up, down = u1.Bytes-u0.Bytes, d1.Bytes-d0.Bytes
	}
	return up, down, f.Params.Len()
}

// TestDeviceStepTraffic counts the bytes that cross between host and
// device in one training step of a float32 flow on the device with the
// action's log det (and force) there too: the parameters go up once
// (Trainer.Step fixes them: before, once per Forward and Reverse, 4× in a
// four-pass REINFORCE step of 2 micro-batches) and their gradients come
// down once; besides them, per configuration, at most 4 arrays of links
// in the flow's precision and 2 in float64 cross each way (z, x, the link
// gradients, the links widened for the log det, the force) and a few
// scalars. Measured at L = 4, 2 layers of [8, 8] (22,792 bytes of
// parameters), 4 configurations a micro-batch: REINFORCE three-pass
// 24,872 up and 23,400 down; four-pass, 2 micro-batches, 27,976 and
// 25,096 (96,352 up before the parameters were fixed); r.t., 2
// micro-batches, 26,952 and 26,184 (49,744 up before).
func TestDeviceStepTraffic(t *testing.T) {
	const micro, V = 4, 16
	for _, c := range []struct {
		est      nf.Estimator
		nMicro   int
		fourPass bool
	}{{nf.REINFORCE, 1, false}, {nf.REINFORCE, 2, true}, {nf.ReparamTrick, 2, false}} {
		t.Run(fmt.Sprintf("%s_micro%d_four%v", c.est, c.nMicro, c.fourPass), func(t *testing.T) {
			up, down, P := stepTraffic(t, c.est, micro, c.nMicro, c.fourPass)
			params := int64(P) * int64(unsafe.Sizeof(float32(0)))
			perConfig := int64(4*2*V*4 + 2*2*V*8 + 64)
			nLocal := int64(micro * c.nMicro)
			t.Logf("up %d bytes, down %d bytes; parameters %d bytes", up, down, params)
			for _, d := range []struct {
				name  string
				bytes int64
			}{{"up", up}, {"down", down}} {
				if d.bytes < params || d.bytes-params > nLocal*perConfig {
					t.Errorf("%s: %d bytes, want the %d bytes of the parameters (or their gradients) once and at most %d a configuration besides",
						d.name, d.bytes, params, perConfig)
				}
			}
		})
	}
}
