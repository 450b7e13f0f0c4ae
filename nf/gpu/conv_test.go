package gpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"nfschwinger/internal/cuda"
)

// devices returns the emulator and, where one exists, the real device 0
// (only the real one with NFSCHWINGER_CUDA_TEST=gpu, for the GPU machine,
// where the test skips without it).
func devices(t testing.TB) map[string]cuda.Driver {
	t.Helper()
	if !deviceCheck() || os.Getenv("NFSCHWINGER_CUDA_CACHE") == "" {
		t.Setenv("NFSCHWINGER_CUDA_CACHE", t.TempDir()) // the device check keeps its one cache
	}
	ds := map[string]cuda.Driver{}
	if !deviceCheck() {
		em, err := cuda.NewEmulator()
		if err != nil {
			t.Fatal(err)
		}
		ds["emulator"] = em
	}
	r, err := cuda.OpenReal(0)
	switch {
	case err == nil:
		t.Cleanup(func() { r.Close() })
		ds["gpu"] = r
	case !errors.Is(err, cuda.ErrNoDevice):
		t.Fatal(err)
	case deviceCheck():
		// The device check without a device: its driver step
		// (internal/cuda's TestDriverLoads) fails and says why.
		t.Skip("no CUDA device")
	}
	return ds
}

// deviceCheck reports whether the tests run as the GPU machine's device
// check (NFSCHWINGER_CUDA_TEST=gpu): on the real device only.
func deviceCheck() bool { return os.Getenv("NFSCHWINGER_CUDA_TEST") == "gpu" }

// forKernels runs body on the kernels of every device of devices(t), in a
// subtest named after the device.
func forKernels(t *testing.T, body func(t *testing.T, k *Kernels)) {
	for name, d := range devices(t) {
		t.Run(name, func(t *testing.T) {
			k, err := NewKernels(d)
			if err != nil {
				t.Fatal(err)
			}
			body(t, k)
		})
	}
}

// expectClose fails the test at the first element of got farther than
// bound from want.
func expectClose[T Float](t *testing.T, what string, got, want []T, bound float64) {
	t.Helper()
	for i := range want {
		if e := math.Abs(float64(got[i]) - float64(want[i])); e > bound {
			t.Fatalf("%T %s[%d] = %v, reference %v (|Δ| %.3g > %.3g)", T(0), what, i, got[i], want[i], e, bound)
		}
	}
}

func toDevice[T Float](t *testing.T, d cuda.Driver, x []T) cuda.DevicePtr {
	t.Helper()
	p, err := cuda.Upload(d, x)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func fromDevice[T Float](t *testing.T, d cuda.Driver, p cuda.DevicePtr, n int) []T {
	t.Helper()
	x := make([]T, n)
	if err := cuda.Download(d, x, p); err != nil {
		t.Fatal(err)
	}
	return x
}

// convShapes are the tested shapes: the conditioner's (6 → 8, 8 → 8 with
// dilation 2, 8 → 5 with dilation 3) and a 5×5 kernel, L = 4 and 8,
// micro-batches 1, 2 and 3.
var convShapes = []struct{ cin, cout, K, dil, L, B int }{
	{6, 8, 3, 1, 4, 3}, {8, 8, 3, 2, 8, 1}, {8, 5, 3, 3, 8, 3}, {3, 4, 5, 1, 8, 2},
}

// convCase is one convolution's inputs and, from a reference, what Forward
// and Backward must give.
type convCase[T Float] struct {
	cin, cout, K, dil, L, B int
	in, gout, w, bias       []T
	gw0, gb0                []T  // Backward adds to these
	out, gin, gw, gb        []T  // the reference's results
	bf16                    bool // run the convolution with bf16 products
}

func newConvCase[T Float](cin, cout, K, dil, L, B int) *convCase[T] {
	N := B * L * L
	rng := rand.New(rand.NewPCG(uint64(cin*cout), uint64(L)))
	rnd := func(n int) []T {
		x := make([]T, n)
		for i := range x {
			x[i] = T(2*rng.Float64() - 1)
		}
		return x
	}
	c := &convCase[T]{cin: cin, cout: cout, K: K, dil: dil, L: L, B: B}
	c.in, c.gout = rnd(cin*N), rnd(cout*N)
	c.w, c.bias = rnd(cout*cin*K*K), rnd(cout)
	c.gw0, c.gb0 = rnd(len(c.w)), rnd(cout)
	return c
}

// direct fills the reference results from the definition of the circular
// convolution (nf.Conv2D's doc) and its adjoints, summed in float64.
func (c *convCase[T]) direct() {
	L, V, N, h := c.L, c.L*c.L, c.B*c.L*c.L, c.K/2
	out, gin := make([]float64, c.cout*N), make([]float64, c.cin*N)
	gw, gb := make([]float64, len(c.w)), make([]float64, c.cout)
	for i, v := range c.gw0 {
		gw[i] = float64(v)
	}
	for i, v := range c.gb0 {
		gb[i] = float64(v)
	}
	wrap := func(a int) int { return ((a % L) + L) % L }
	for b := range c.B {
		for i := range L {
			for j := range L {
				n := b*V + i*L + j
				for co := range c.cout {
					s := float64(c.bias[co])
					g := float64(c.gout[co*N+n])
					gb[co] += g
					for ci := range c.cin {
						for ki := range c.K {
							for kj := range c.K {
								src := b*V + wrap(i+(ki-h)*c.dil)*L + wrap(j+(kj-h)*c.dil)
								wi := ((co*c.cin+ci)*c.K+ki)*c.K + kj
								x := float64(c.in[ci*N+src])
								s += float64(c.w[wi]) * x
								gw[wi] += g * x
								gin[ci*N+src] += g * float64(c.w[wi])
							}
						}
					}
					out[co*N+n] = s
				}
			}
		}
	}
	conv := func(x []float64) []T {
		y := make([]T, len(x))
		for i, v := range x {
			y[i] = T(v)
		}
		return y
	}
	c.out, c.gin, c.gw, c.gb = conv(out), conv(gin), conv(gw), conv(gb)
}

// check runs the device convolution on c and compares with the
// reference: every result within tol × the number of terms of its sums
// (at most max(Cin·K², Cout·K², N) + 1 of size ≤ 1).
func (c *convCase[T]) check(t *testing.T, k *Kernels, tol float64) {
	t.Helper()
	d := k.d
	N := c.B * c.L * c.L
	cv := NewConv[T](k, c.cin, c.cout, c.K, c.dil)
	cv.BF16 = c.bf16
	defer cv.Close()
	pin, pw, pb := toDevice(t, d, c.in), toDevice(t, d, c.w), toDevice(t, d, c.bias)
	pout, err := d.Alloc(c.cout * N * size[T]())
	if err != nil {
		t.Fatal(err)
	}
	if err := cv.Forward(pout, pin, pw, pb, c.B, c.L); err != nil {
		t.Fatal(err)
	}
	pgout, pgw, pgb := toDevice(t, d, c.gout), toDevice(t, d, c.gw0), toDevice(t, d, c.gb0)
	pgin, err := d.Alloc(c.cin * N * size[T]())
	if err != nil {
		t.Fatal(err)
	}
	if err := cv.Backward(pgin, pgout, pin, pw, pgw, pgb, c.B, c.L); err != nil {
		t.Fatal(err)
	}
	scale := float64(max(c.cin*c.K*c.K, c.cout*c.K*c.K, N)) + 1
	for _, q := range []struct {
		name      string
		got, want []T
	}{
		{"out", fromDevice[T](t, d, pout, c.cout*N), c.out},
		{"gin", fromDevice[T](t, d, pgin, c.cin*N), c.gin},
		{"gw", fromDevice[T](t, d, pgw, len(c.w)), c.gw},
		{"gb", fromDevice[T](t, d, pgb, c.cout), c.gb},
	} {
		expectClose(t, q.name, q.got, q.want, tol*scale)
	}
}

// testConvShapes runs every shape of convShapes on every device, in
// float64 (within 1e-12 of the sums' size) and float32 (64 float32 ulps),
// with the reference results that ref fills in.
func testConvShapes(t *testing.T, ref func(c64 *convCase[float64], c32 *convCase[float32])) {
	forKernels(t, func(t *testing.T, k *Kernels) {
		for _, s := range convShapes {
			t.Run(fmt.Sprintf("%d-%d_K%d_d%d_L%d_B%d", s.cin, s.cout, s.K, s.dil, s.L, s.B), func(t *testing.T) {
				c64 := newConvCase[float64](s.cin, s.cout, s.K, s.dil, s.L, s.B)
				c32 := newConvCase[float32](s.cin, s.cout, s.K, s.dil, s.L, s.B)
				ref(c64, c32)
				c64.check(t, k, 1e-12)
				c32.check(t, k, 64*0x1p-24)
			})
		}
	})
}

// TestConvDirect: the device convolution against its definition summed in
// float64. No cgo: this is the test the GPU machine runs.
func TestConvDirect(t *testing.T) {
	testConvShapes(t, func(c64 *convCase[float64], c32 *convCase[float32]) { c64.direct(); c32.direct() })
}

// TestConvReach: a kernel that reaches L sites or more is refused (the
// kernels wrap by one conditional add of ±L), one that reaches L − 1 runs.
func TestConvReach(t *testing.T) {
	forKernels(t, func(t *testing.T, k *Kernels) {
		for _, c := range []struct {
			K, dil, L int
			ok        bool
		}{{3, 3, 4, true}, {3, 4, 4, false}, {5, 2, 4, false}, {5, 1, 3, true}} {
			cv := NewConv[float64](k, 1, 1, c.K, c.dil)
			n := c.L * c.L
			in, out := toDevice(t, k.d, make([]float64, n)), toDevice(t, k.d, make([]float64, n))
			w, b := toDevice(t, k.d, make([]float64, c.K*c.K)), toDevice(t, k.d, []float64{0})
			err := cv.Forward(out, in, w, b, 1, c.L)
			if (err == nil) != c.ok {
				t.Errorf("K %d, dilation %d, L %d: error %v, want ok = %v", c.K, c.dil, c.L, err, c.ok)
			}
			cv.Close()
			for _, p := range []cuda.DevicePtr{in, out, w, b} {
				k.d.Free(p)
			}
		}
	})
}

// TestLeakyReLU: the device LeakyReLU and its backward pass equal their
// definition (nf.LeakyReLU's) exactly, zeros and negative zeros included.
func TestLeakyReLU(t *testing.T) {
	forKernels(t, func(t *testing.T, k *Kernels) {
		d := k.d
		const n, slope = 1000, float32(0.01)
		rng := rand.New(rand.NewPCG(5, 6))
		x, g := make([]float32, n), make([]float32, n)
		for i := range x {
			x[i], g[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		x[0], x[1] = 0, float32(math.Copysign(0, -1))
		px, pg := toDevice(t, d, x), toDevice(t, d, g)
		if err := cuda.Launch(k.leaky[0], grid(n), block, px, slope, int64(n)); err != nil {
			t.Fatal(err)
		}
		y := fromDevice[float32](t, d, px, n)
		if err := cuda.Launch(k.leakyBwd[0], grid(n), block, pg, px, slope, int64(n)); err != nil {
			t.Fatal(err)
		}
		gy := fromDevice[float32](t, d, pg, n)
		for i := range x {
			wy, wg := x[i], g[i]
			if !(x[i] > 0) {
				wy *= slope
				wg *= slope
			}
			if math.Float32bits(y[i]) != math.Float32bits(wy) || gy[i] != wg {
				t.Fatalf("element %d: x %v → %v (want %v), g %v → %v (want %v)", i, x[i], y[i], wy, g[i], gy[i], wg)
			}
		}
	})
}

// checkSites runs ForwardSites and BackwardSites on c at sites, c's
// reference being the full convolution with an output gradient that is
// zero off the sites (c.gout): the compact results must equal it there.
func (c *convCase[T]) checkSites(t *testing.T, k *Kernels, sites []int, tol float64) {
	t.Helper()
	d := k.d
	V, N, nS := c.L*c.L, c.B*c.L*c.L, len(sites)
	M := c.B * nS
	s, err := NewSites(d, sites, c.L, c.K, c.dil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	compact := func(full []T, C int) []T {
		out := make([]T, C*M)
		for ch := range C {
			for b := range c.B {
				for i, x := range sites {
					out[ch*M+b*nS+i] = full[ch*N+b*V+x]
				}
			}
		}
		return out
	}
	cv := NewConv[T](k, c.cin, c.cout, c.K, c.dil)
	defer cv.Close()
	pin, pw, pb := toDevice(t, d, c.in), toDevice(t, d, c.w), toDevice(t, d, c.bias)
	pout, err := d.Alloc(c.cout * M * size[T]())
	if err != nil {
		t.Fatal(err)
	}
	if err := cv.ForwardSites(pout, pin, pw, pb, c.B, c.L, s); err != nil {
		t.Fatal(err)
	}
	pgw, pgb := toDevice(t, d, c.gw0), toDevice(t, d, c.gb0)
	pgin, err := d.Alloc(c.cin * N * size[T]())
	if err != nil {
		t.Fatal(err)
	}
	if err := cv.BackwardSites(pgin, toDevice(t, d, compact(c.gout, c.cout)), pin, pw, pgw, pgb, c.B, c.L, s); err != nil {
		t.Fatal(err)
	}
	scale := float64(max(c.cin*c.K*c.K, c.cout*c.K*c.K, N)) + 1
	for _, q := range []struct {
		name      string
		got, want []T
	}{
		{"out", fromDevice[T](t, d, pout, c.cout*M), compact(c.out, c.cout)},
		{"gin", fromDevice[T](t, d, pgin, c.cin*N), c.gin},
		{"gw", fromDevice[T](t, d, pgw, len(c.w)), c.gw},
		{"gb", fromDevice[T](t, d, pgb, c.cout), c.gb},
	} {
		expectClose(t, "sites "+q.name, q.got, q.want, tol*scale)
	}
}

// quarterSites are every fourth site, a stand-in for a layer's active
// plaquettes (any subset will do: every tap maps it one to one).
func quarterSites(L int) []int {
	var s []int
	for x := 1; x < L*L; x += 4 {
		s = append(s, x)
	}
	return s
}

// zeroOff sets c.gout to zero off the sites.
func (c *convCase[T]) zeroOff(sites []int) {
	V, N := c.L*c.L, c.B*c.L*c.L
	on := make([]bool, V)
	for _, x := range sites {
		on[x] = true
	}
	for ch := range c.cout {
		for n := range N {
			if !on[n%V] {
				c.gout[ch*N+n] = 0
			}
		}
	}
}

// TestConvSitesDirect: the convolution at a quarter of the sites against
// the definition (no cgo).
func TestConvSitesDirect(t *testing.T) {
	forKernels(t, func(t *testing.T, k *Kernels) {
		for _, s := range convShapes {
			sites := quarterSites(s.L)
			c64 := newConvCase[float64](s.cin, s.cout, s.K, s.dil, s.L, s.B)
			c64.zeroOff(sites)
			c64.direct()
			c64.checkSites(t, k, sites, 1e-12)
			c32 := newConvCase[float32](s.cin, s.cout, s.K, s.dil, s.L, s.B)
			c32.zeroOff(sites)
			c32.direct()
			c32.checkSites(t, k, sites, 64*0x1p-24)
		}
	})
}

// roundBF16 rounds x to bfloat16 values (nearest even), in place.
func roundBF16(x []float32) {
	for i, v := range x {
		u := math.Float32bits(v)
		x[i] = math.Float32frombits(((u + 0x7fff + (u>>16)&1) >> 16) << 16)
	}
}

// TestConvBF16: with bf16 products, the convolution of the unrounded
// input, weights and output gradient equals the definition evaluated on
// their bf16 roundings (exact in float64, so what is left is float32
// accumulation: the float32 tolerance; the bias gradient sums the
// unrounded output gradient, as on the device), and that differs from the
// unrounded convolution by far more than the tolerance — so the device
// does round. No cgo.
func TestConvBF16(t *testing.T) {
	forKernels(t, func(t *testing.T, k *Kernels) {
		for _, s := range convShapes {
			exact := newConvCase[float32](s.cin, s.cout, s.K, s.dil, s.L, s.B)
			exact.direct()
			c := newConvCase[float32](s.cin, s.cout, s.K, s.dil, s.L, s.B) // the same values
			roundBF16(c.in)
			roundBF16(c.w)
			roundBF16(c.gout)
			c.direct()
			diff := 0.0
			for i := range c.out {
				diff = max(diff, math.Abs(float64(c.out[i]-exact.out[i])))
			}
			if diff < 1e-4 {
				t.Fatalf("%+v: bf16 rounding moved the reference output by only %.3g", s, diff)
			}
			c.in, c.w, c.gout, c.gb = exact.in, exact.w, exact.gout, exact.gb
			c.bf16 = true
			c.check(t, k, 64*0x1p-24)
		}
	})
}
