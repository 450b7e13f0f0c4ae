package gpu

import (
	"encoding/gob"
	"fmt"
	"math"
	"os"
)

// Passes are the results of every pass of a flow on one micro-batch, as
// float64: Forward (X, LogJF), Reverse (Z, LogJR) of the reference flow's
// X (the float64 CPU flow's: every flow inverts the same links, rounded
// to its precision, since the reverse pass's gradients are so sensitive
// to its input that two flows' own Forward outputs, one rounding apart,
// give results further apart than their arithmetic does), and for fixed
// upstream gradients the input-link and parameter gradients of
// BackwardForward (GzF, GradF), BackwardReverseFromForward on the same
// forward tape (GxRF, GradRF) and BackwardReverse after the Reverse (GxR,
// GradR). The parity checks of the device flow against the CPU flow
// compare them (nf/device's tests on the emulator, gpu-check's on a GPU).
type Passes struct {
	X, LogJF, Z, LogJR       []float64
	GzF, GradF, GxRF, GradRF []float64
	GxR, GradR               []float64
}

// Reference is a recorded parity case: a flow (Spec, its parameters in
// nf.ParamSet's layout), the inputs of the passes of one micro-batch of B
// (prior samples Z, upstream link gradient GOut, log J gradient GLogJ;
// exactly representable in float32) and the CPU flow's Passes in float64
// and in float32. Written by nf/device's tests (NFSCHWINGER_GPU_REFERENCE)
// for the device check, which has no CPU flow.
type Reference struct {
	Name            string
	Spec            FlowSpec
	B               int
	Params, Z, GOut []float64
	GLogJ           []float64
	CPU64, CPU32    Passes
}

// WriteReferences writes refs to path (gob).
func WriteReferences(path string, refs []Reference) error { return writeGob(path, refs) }

// ReadReferences reads the references WriteReferences wrote.
func ReadReferences(path string) ([]Reference, error) {
	var refs []Reference
	return refs, readGob(path, &refs)
}

// writeGob writes v to path.
func writeGob(path string, v any) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := gob.NewEncoder(f).Encode(v); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// readGob reads into v what writeGob wrote to path.
func readGob(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := gob.NewDecoder(f).Decode(v); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// fields names the results.
func (p Passes) fields() []namedResult {
	return []namedResult{{"Forward x", p.X}, {"Forward log J", p.LogJF}, {"Reverse z", p.Z}, {"Reverse log J", p.LogJR},
		{"BackwardForward gz", p.GzF}, {"BackwardForward grad", p.GradF},
		{"BackwardReverseFromForward gx", p.GxRF}, {"BackwardReverseFromForward grad", p.GradRF},
		{"BackwardReverse gx", p.GxR}, {"BackwardReverse grad", p.GradR}}
}

type namedResult struct {
	name string
	v    []float64
}

// RelErr returns max |a − b| / max |b| (angles compared on the circle; a
// NaN difference sticks).
func RelErr(a, b []float64, angles bool) float64 {
	scale, e := 0.0, 0.0
	for i := range b {
		scale = math.Max(scale, math.Abs(b[i]))
		d := math.Abs(a[i] - b[i])
		if angles {
			d = math.Min(d, 2*math.Pi-d)
		}
		if !(d <= e) {
			e = d // NaN sticks
		}
	}
	if scale == 0 {
		return e
	}
	return e / scale
}

// ComparePasses checks a flow's results against the CPU's, for the prior
// samples z0 the Forward passes started from, and returns one message per
// result beyond its bound:
//   - float64 (dev64 against cpu64): within 1e-12 of the largest value of
//     each result; where the result is that sensitive to rounding, within
//     twice the sum of both implementations' own error measured where the
//     exact answer is known: for Reverse z its distance from z0 (the
//     preimages carry the rounding of the inversion, amplified by 1/g' of
//     the later layers: above 1e-12 for 8 layers of steep splines), for
//     BackwardReverse its disagreement with the mathematically equal
//     BackwardReverseFromForward (up to 1e-11);
//   - float32: dev32 and cpu32 both against cpu64, the device's error
//     within 4× the CPU's plus 64 float32 ulps of the largest value (the
//     same operations in another order, and CUDA's or the C library's
//     math functions instead of Go's).
func ComparePasses(z0 []float64, dev64, cpu64, dev32, cpu32 Passes) []string {
	floor := map[string]float64{
		"Reverse z":            RelErr(cpu64.Z, z0, true) + RelErr(dev64.Z, z0, true),
		"BackwardReverse gx":   RelErr(cpu64.GxR, cpu64.GxRF, false) + RelErr(dev64.GxR, dev64.GxRF, false),
		"BackwardReverse grad": RelErr(cpu64.GradR, cpu64.GradRF, false) + RelErr(dev64.GradR, dev64.GradRF, false),
	}
	var bad []string
	d64, c64, d32, c32 := dev64.fields(), cpu64.fields(), dev32.fields(), cpu32.fields()
	for i, r := range c64 {
		angles := r.name == "Forward x" || r.name == "Reverse z"
		bound := max(1e-12, 2*floor[r.name])
		if e := RelErr(d64[i].v, r.v, angles); !(e <= bound) {
			bad = append(bad, fmt.Sprintf("float64 %s: relative error %.3g > %.3g", r.name, e, bound))
		}
		ec, ed := RelErr(c32[i].v, r.v, angles), RelErr(d32[i].v, r.v, angles)
		if !(ed <= 4*ec+64*0x1p-24) {
			bad = append(bad, fmt.Sprintf("float32 %s: device error %.3g, CPU error %.3g", r.name, ed, ec))
		}
	}
	return bad
}

// RunPasses runs every pass of Passes on the device flow f (with a tape)
// for the parameters params and the inputs z, gout, glogJ of B
// configurations, rounded to T; Reverse inverts xrev (the reference
// flow's Forward output), rounded to T.
func RunPasses[T Float](f *Flow[T], params, z, xrev, gout, glogJ []float64, B int) (Passes, error) {
	toT := func(v []float64) []T {
		out := make([]T, len(v))
		for i, x := range v {
			out[i] = T(x)
		}
		return out
	}
	to64 := func(v []T) []float64 {
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}
	var p Passes
	if err := f.SetParams(toT(params)); err != nil {
		return p, err
	}
	n := len(z)
	zt, g, xr := toT(z), toT(gout), toT(xrev)
	x, zr, gin := make([]T, n), make([]T, n), make([]T, n)
	grad, tmp := make([]T, len(params)), make([]T, len(params))
	lf, lr := make([]float64, B), make([]float64, B)
	grads := func() ([]float64, error) {
		clear(grad)
		err := f.AddGrads(grad, tmp)
		return to64(grad), err
	}
	steps := []func() error{
		func() error { return f.Forward(x, zt, lf, B, true) },
		func() error { return f.Backward(gin, g, glogJ, false) },
		func() (err error) { p.GzF = to64(gin); p.GradF, err = grads(); return },
		func() error { return f.Backward(gin, g, glogJ, true) },
		func() (err error) { p.GxRF = to64(gin); p.GradRF, err = grads(); return },
		func() error { return f.Reverse(zr, xr, lr, B, true) },
		func() error { return f.Backward(gin, g, glogJ, false) },
		func() (err error) { p.GxR = to64(gin); p.GradR, err = grads(); return },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return p, err
		}
	}
	p.X, p.Z, p.LogJF, p.LogJR = to64(x), to64(zr), lf, lr
	return p, nil
}

// CheckReference runs the case r on a device flow of the kernels' device,
// in float64 and float32, and compares the results with the CPU's
// (ComparePasses); a failure of the device is one message.
func CheckReference(k *Kernels, r Reference) []string {
	run := func(p *Passes, f func() (Passes, error)) error {
		var err error
		*p, err = f()
		return err
	}
	var d64, d32 Passes
	if err := run(&d64, func() (Passes, error) { return runReference[float64](k, r) }); err != nil {
		return []string{"float64: " + err.Error()}
	}
	if err := run(&d32, func() (Passes, error) { return runReference[float32](k, r) }); err != nil {
		return []string{"float32: " + err.Error()}
	}
	return ComparePasses(r.Z, d64, r.CPU64, d32, r.CPU32)
}

func runReference[T Float](k *Kernels, r Reference) (Passes, error) {
	f, err := NewFlow[T](k, r.Spec, r.B, true)
	if err != nil {
		return Passes{}, err
	}
	defer f.Close()
	return RunPasses(f, r.Params, r.Z, r.CPU64.X, r.GOut, r.GLogJ, r.B)
}
