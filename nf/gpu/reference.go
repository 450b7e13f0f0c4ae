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
// GradR). The parity suite compares every engine's against the float64
// OpenBLAS engine's (Compare; nf's TestEngineParity, with the CUDA
// engine on the emulator; the device check's on a GPU).
type Passes struct {
	X, LogJF, Z, LogJR       []float64
	XUntaped                 []float64 // Forward without a tape: equal to X
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

// Precision is what an engine computes in, for Compare: its bounds
// follow from it.
type Precision int

// The precisions of the engines: float64, float32, and float32 with bf16
// convolution inputs and weights.
const (
	Float64 Precision = iota
	Float32
	BF16
)

// Comparison is one engine's Passes against the float64 reference, with
// what its bounds need:
//   - Float64: within 1e-12 of the largest value of each result; where
//     the result is that sensitive to rounding, within twice the sum of
//     the engine's and the reference's own error measured where the exact
//     answer is known: for Reverse z its distance from Z0 (the preimages
//     carry the rounding of the inversion, amplified by 1/g' of the later
//     layers: above 1e-12 for 8 layers of steep splines), for
//     BackwardReverse its disagreement with the mathematically equal
//     BackwardReverseFromForward (up to 1e-11);
//   - Float32: within 4× the error of Base (the float32 OpenBLAS engine,
//     the same operations in another order) plus 64 float32 ulps of the
//     largest value; the forward and reverse twins (x and z, the two
//     log J: the same sums at the same points) share the larger of their
//     Base errors, since at one configuration one of them can be lucky;
//   - BF16: above 10× the error of Same (the engine's own float32
//     results: the bf16 rounding really happens) and within 2¹⁶× the
//     larger of Same's and Base's (bf16's unit roundoff 2⁻⁹ against
//     float32's 2⁻²⁵, the same sums and cancellations).
//
// Every error is RelErr. OutputsOnly leaves the gradients out: at a
// LeakyReLU slope other than 1 the gradient is discontinuous where a
// hidden pre-activation is 0, and one within rounding of 0 takes either
// side's factor in two engines that sum in different orders (seen:
// oneDNN's AVX2 kernels, one element 3 % off with every convolution exact
// to float32); the outputs are continuous there.
type Comparison struct {
	Precision   Precision
	Got, Ref    Passes
	Base, Same  Passes    // Float32 and BF16: the float32 OpenBLAS engine's; BF16: the engine's own float32
	RefSelf     Passes    // Float64: the reference engine's results on the same case (its own floors)
	Z0          []float64 // the prior samples the Forward passes started from (Float64's Reverse z floor)
	OutputsOnly bool
}

// ulps32 is 64 float32 ulps, relative: the floor of the float32 bound.
const ulps32 = 64 * 0x1p-24

// Compare returns one message per result of c.Got beyond its bound
// (Comparison), and one if Forward with and without a tape differ.
func Compare(c Comparison) []string {
	var bad []string
	if !equal(c.Got.X, c.Got.XUntaped) {
		bad = append(bad, "Forward with and without a tape differ")
	}
	got, ref := c.Got.fields(), c.Ref.fields()
	base, same := c.Base.fields(), c.Same.fields()
	twin := map[string]string{"Forward x": "Reverse z", "Reverse z": "Forward x", "Forward log J": "Reverse log J", "Reverse log J": "Forward log J"}
	idx := map[string]int{}
	for i, r := range ref {
		idx[r.name] = i
	}
	for i, r := range ref {
		if c.OutputsOnly && !r.output() {
			continue
		}
		angles := r.name == "Forward x" || r.name == "Reverse z"
		e := RelErr(got[i].v, r.v, angles)
		var bound float64
		var rule string
		switch c.Precision {
		case Float64:
			bound, rule = max(1e-12, 2*c.floor64(r.name)), "float64"
		case Float32:
			eb := RelErr(base[i].v, r.v, angles)
			if tw, ok := twin[r.name]; ok {
				eb = max(eb, RelErr(base[idx[tw]].v, ref[idx[tw]].v, angles))
			}
			bound, rule = 4*eb+ulps32, fmt.Sprintf("4 × float32 OpenBLAS's %.3g + 64 ulps", eb)
		case BF16:
			es, eb := RelErr(same[i].v, r.v, angles), RelErr(base[i].v, r.v, angles)
			bound, rule = 0x1p16*max(es, eb), fmt.Sprintf("2¹⁶ × max(own float32 %.3g, OpenBLAS %.3g)", es, eb)
			if !(e > 10*es) {
				bad = append(bad, fmt.Sprintf("bf16 %s: relative error %.3g not above 10 × its float32 error %.3g: no bf16 rounding?", r.name, e, es))
			}
		}
		if !(e <= bound) {
			bad = append(bad, fmt.Sprintf("%s: relative error %.3g > %.3g (%s)", r.name, e, bound, rule))
		}
	}
	return bad
}

// floor64 is the float64 bound's floor of result name (Comparison).
func (c Comparison) floor64(name string) float64 {
	switch name {
	case "Reverse z":
		return RelErr(c.RefSelf.Z, c.Z0, true) + RelErr(c.Got.Z, c.Z0, true)
	case "BackwardReverse gx":
		return RelErr(c.RefSelf.GxR, c.RefSelf.GxRF, false) + RelErr(c.Got.GxR, c.Got.GxRF, false)
	case "BackwardReverse grad":
		return RelErr(c.RefSelf.GradR, c.RefSelf.GradRF, false) + RelErr(c.Got.GradR, c.Got.GradRF, false)
	}
	return 0
}

// output reports whether the result is an output of Forward or Reverse
// (not a gradient).
func (r namedResult) output() bool {
	return r.name == "Forward x" || r.name == "Forward log J" || r.name == "Reverse z" || r.name == "Reverse log J"
}

// equal reports whether a and b are equal element by element.
func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ComparePasses is the device check's comparison of a device flow's
// results in float64 (dev64) and float32 (dev32) against the CPU's
// recorded ones (Compare's Float64 and Float32 rules), for the prior
// samples z0.
func ComparePasses(z0 []float64, dev64, cpu64, dev32, cpu32 Passes) []string {
	bad := Compare(Comparison{Precision: Float64, Got: dev64, Ref: cpu64, RefSelf: cpu64, Z0: z0})
	for _, m := range Compare(Comparison{Precision: Float32, Got: dev32, Ref: cpu64, Base: cpu32}) {
		bad = append(bad, "float32 "+m)
	}
	return bad
}

// PassFlow is a flow whose passes RunPasses drives, with a tape: nf/gpu's
// Flow, or an nf.Flow on any engine (nf/device's parity suite adapts one).
// Backward is the backward pass of the pass the tape recorded last, or
// with fromForward the reverse flow's from a forward tape; AddGrads adds
// the parameter gradients accumulated since the last call into grad
// (tmp: scratch of its length) and zeroes them.
type PassFlow[T Float] interface {
	SetParams(data []T) error
	Forward(x, z []T, logJ []float64, B int, tape bool) error
	Reverse(z, x []T, logJ []float64, B int, tape bool) error
	Backward(gin, gout []T, glogJ []float64, fromForward bool) error
	AddGrads(grad, tmp []T) error
}

// RunPasses runs every pass of Passes on f for the parameters params and
// the inputs z, gout, glogJ of B configurations, rounded to T; Reverse
// inverts xrev (the reference flow's Forward output), rounded to T, or
// with xrev nil (the reference itself) f's Forward output.
func RunPasses[T Float](f PassFlow[T], params, z, xrev, gout, glogJ []float64, B int) (Passes, error) {
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
	x, xu, zr, gin := make([]T, n), make([]T, n), make([]T, n), make([]T, n)
	grad, tmp := make([]T, len(params)), make([]T, len(params))
	lf, lu, lr := make([]float64, B), make([]float64, B), make([]float64, B)
	grads := func() ([]float64, error) {
		clear(grad)
		err := f.AddGrads(grad, tmp)
		return to64(grad), err
	}
	steps := []func() error{
		func() error { return f.Forward(xu, zt, lu, B, false) },
		func() error { return f.Forward(x, zt, lf, B, true) },
		func() error { return f.Backward(gin, g, glogJ, false) },
		func() (err error) { p.GzF = to64(gin); p.GradF, err = grads(); return },
		func() error { return f.Backward(gin, g, glogJ, true) },
		func() (err error) { p.GxRF = to64(gin); p.GradRF, err = grads(); return },
		func() error {
			if xrev == nil { // the reference inverts its own Forward output
				xr = x
			}
			return f.Reverse(zr, xr, lr, B, true)
		},
		func() error { return f.Backward(gin, g, glogJ, false) },
		func() (err error) { p.GxR = to64(gin); p.GradR, err = grads(); return },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return p, err
		}
	}
	p.X, p.XUntaped, p.Z, p.LogJF, p.LogJR = to64(x), to64(xu), to64(zr), lf, lr
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
