package cuda

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"math/cmplx"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

//go:embed testdata/test.cu
var testSource string

// drivers returns the devices to test: the emulator, and the real device 0
// where a CUDA driver and device exist. With NFSCHWINGER_CUDA_TEST=gpu
// (the GPU machine's check, which has no OpenBLAS for the emulator) only
// the real device, and its absence fails the test.
func drivers(t *testing.T) map[string]Driver {
	t.Helper()
	isolateCache(t)
	if deviceCheck() {
		r, err := OpenReal(0)
		if errors.Is(err, ErrNoDevice) {
			t.Skip("no CUDA device (the device check's TestDriverLoads says why)")
		}
		if err != nil {
			t.Fatalf("NFSCHWINGER_CUDA_TEST=gpu: %v", err)
		}
		t.Logf("device: %s; NVRTC options %v", r.Name(), r.CompileOptions())
		t.Cleanup(func() { r.Close() })
		return map[string]Driver{"gpu": r}
	}
	em, err := NewEmulator()
	if err != nil {
		t.Fatal(err)
	}
	ds := map[string]Driver{"emulator": em}
	if r, err := OpenReal(0); err == nil {
		t.Cleanup(func() { r.Close() })
		ds["gpu"] = r
	} else if !errors.Is(err, ErrNoDevice) {
		t.Fatalf("a CUDA driver is there but: %v", err)
	}
	return ds
}

// deviceCheck reports whether the tests run as the GPU machine's device
// check (NFSCHWINGER_CUDA_TEST=gpu): against the real device only, on a
// machine without g++ and OpenBLAS, so without the emulator.
func deviceCheck() bool { return os.Getenv("NFSCHWINGER_CUDA_TEST") == "gpu" }

// emulatorOnly skips a test of the emulator itself in the device check.
func emulatorOnly(t *testing.T) {
	t.Helper()
	if deviceCheck() {
		t.Skip("a test of the emulator: not run in the device check (NFSCHWINGER_CUDA_TEST=gpu)")
	}
}

// isolateCache gives the test a compile cache of its own, except in the
// device check, which sets one cache for all its tests so that NVRTC
// compiles each source once.
func isolateCache(t *testing.T) {
	t.Helper()
	if deviceCheck() && os.Getenv("NFSCHWINGER_CUDA_CACHE") != "" {
		return
	}
	t.Setenv("NFSCHWINGER_CUDA_CACHE", t.TempDir())
}

// upload is Upload, failing the test on an error.
func upload[T any](t *testing.T, d Driver, x []T) DevicePtr {
	t.Helper()
	p, err := Upload(d, x)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// download is Download, failing the test on an error.
func download[T any](t *testing.T, d Driver, x []T, p DevicePtr) {
	t.Helper()
	if err := Download(d, x, p); err != nil {
		t.Fatal(err)
	}
}

func kernel(t *testing.T, m Module, name string) Function {
	t.Helper()
	f, err := m.Function(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestKernels runs the test kernels and compares them with Go: axpy
// exactly (one float32 multiply-add per element, no fused rounding on
// either side is not guaranteed on a GPU, so within one ulp), the
// shared-memory reduction and the atomics within float64 rounding of
// their sums, the 3D coordinates exactly.
func TestKernels(t *testing.T) {
	for name, d := range drivers(t) {
		t.Run(name, func(t *testing.T) {
			m, err := d.Compile("test.cu", testSource)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))

			// axpy over 1000 elements in blocks of 128 (a partial last block).
			const n = 1000
			x, y := make([]float32, n), make([]float32, n)
			for i := range x {
				x[i], y[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
			}
			px, py := upload(t, d, x), upload(t, d, y)
			if err := Launch(kernel(t, m, "axpy"), Dim3{X: (n + 127) / 128}, Dim3{X: 128}, py, px, float32(0.5), int32(n)); err != nil {
				t.Fatal(err)
			}
			got := make([]float32, n)
			download(t, d, got, py)
			for i := range got {
				want := y[i] + 0.5*x[i]
				if math.Abs(float64(got[i]-want)) > 1e-6*math.Abs(float64(want))+1e-7 {
					t.Fatalf("axpy[%d] = %v, want %v", i, got[i], want)
				}
			}

			// Row sums: 7 rows of 1000, blocks of 128 threads.
			const rows, cols = 7, 1000
			a := make([]float64, rows*cols)
			for i := range a {
				a[i] = rng.NormFloat64()
			}
			pa, err := d.Alloc(rows * 8)
			if err != nil {
				t.Fatal(err)
			}
			if err := Launch(kernel(t, m, "row_sums"), Dim3{X: rows}, Dim3{X: 128}, pa, upload(t, d, a), int32(cols)); err != nil {
				t.Fatal(err)
			}
			sums := make([]float64, rows)
			download(t, d, sums, pa)
			for r := range rows {
				want, abs := 0.0, 0.0
				for _, v := range a[r*cols : (r+1)*cols] {
					want += v
					abs += math.Abs(v)
				}
				if math.Abs(sums[r]-want) > 1e-14*abs {
					t.Errorf("row %d: sum %v, want %v", r, sums[r], want)
				}
			}

			// Coordinates of a 3×2×2 grid of 4×3×2 blocks.
			g, b := Dim3{3, 2, 2}, Dim3{4, 3, 2}
			total := 12 * 24
			out := make([]int32, 6*total)
			po := upload(t, d, out)
			if err := Launch(kernel(t, m, "coords"), g, b, po, int64(6)); err != nil {
				t.Fatal(err)
			}
			download(t, d, out, po)
			i := 0
			for bz := range 2 {
				for by := range 2 {
					for bx := range 3 {
						for tz := range 2 {
							for ty := range 3 {
								for tx := range 4 {
									want := []int32{int32(bx), int32(by), int32(bz), int32(tx), int32(ty), int32(tz)}
									if fmt.Sprint(out[6*i:6*i+6]) != fmt.Sprint(want) {
										t.Fatalf("thread %d: coordinates %v, want %v", i, out[6*i:6*i+6], want)
									}
									i++
								}
							}
						}
					}
				}
			}

			// Atomics: 10,000 additions into one float64.
			const na = 10000
			v := make([]float64, na)
			want, abs := 0.0, 0.0
			for i := range v {
				v[i] = rng.Float64()
				want += v[i]
				abs += v[i]
			}
			ps := upload(t, d, []float64{0})
			if err := Launch(kernel(t, m, "atomic_sum"), Dim3{X: (na + 255) / 256}, Dim3{X: 256}, ps, upload(t, d, v), uint32(na)); err != nil {
				t.Fatal(err)
			}
			s := []float64{0}
			download(t, d, s, ps)
			if math.Abs(s[0]-want) > 1e-13*abs {
				t.Errorf("atomic sum %v, want %v", s[0], want)
			}
		})
	}
}

// TestGemm: Sgemm and Dgemm in cuBLAS's column-major convention, every
// transpose combination, leading dimensions larger than the rows, against
// the product term by term in float64.
func TestGemm(t *testing.T) {
	for name, d := range drivers(t) {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			const m, n, k = 7, 5, 9
			for _, ta := range []Op{NoTrans, Trans} {
				for _, tb := range []Op{NoTrans, Trans} {
					ra, ca := m, k // op(A) is m×k: A is ra×ca column-major
					if ta == Trans {
						ra, ca = k, m
					}
					rb, cb := k, n
					if tb == Trans {
						rb, cb = n, k
					}
					lda, ldb, ldc := ra+2, rb+1, m+3
					a, b, c := make([]float64, lda*ca), make([]float64, ldb*cb), make([]float64, ldc*n)
					for _, x := range [][]float64{a, b, c} {
						for i := range x {
							x[i] = rng.NormFloat64()
						}
					}
					at := func(x []float64, ld, i, j int, tr Op) float64 {
						if tr == Trans {
							i, j = j, i
						}
						return x[j*ld+i]
					}
					want := append([]float64(nil), c...)
					for i := range m {
						for j := range n {
							s := 0.0
							for l := range k {
								s += at(a, lda, i, l, ta) * at(b, ldb, l, j, tb)
							}
							want[j*ldc+i] = 0.5*s - 2*c[j*ldc+i]
						}
					}
					// float64
					pc := upload(t, d, c)
					if err := d.Dgemm(ta, tb, m, n, k, 0.5, upload(t, d, a), lda, upload(t, d, b), ldb, -2, pc, ldc); err != nil {
						t.Fatal(err)
					}
					got := make([]float64, len(c))
					download(t, d, got, pc)
					// float32
					a32, b32, c32 := f32(a), f32(b), f32(c)
					pc32 := upload(t, d, c32)
					if err := d.Sgemm(ta, tb, m, n, k, 0.5, upload(t, d, a32), lda, upload(t, d, b32), ldb, -2, pc32, ldc); err != nil {
						t.Fatal(err)
					}
					got32 := make([]float32, len(c))
					download(t, d, got32, pc32)
					for j := range n {
						for i := range m {
							w := want[j*ldc+i]
							if e := math.Abs(got[j*ldc+i] - w); e > 1e-13*(1+math.Abs(w)) {
								t.Fatalf("Dgemm %v %v: C[%d,%d] = %v, want %v", ta, tb, i, j, got[j*ldc+i], w)
							}
							// float32: inputs rounded to 2⁻²⁴ relative, k = 9 terms of size ≈ 1.
							if e := math.Abs(float64(got32[j*ldc+i]) - w); e > 1e-5*(k+math.Abs(w)) {
								t.Fatalf("Sgemm %v %v: C[%d,%d] = %v, want %v", ta, tb, i, j, got32[j*ldc+i], w)
							}
						}
						// Rows of C beyond m are untouched.
						for i := m; i < ldc; i++ {
							if got[j*ldc+i] != c[j*ldc+i] {
								t.Fatalf("Dgemm %v %v wrote C[%d,%d] outside the matrix", ta, tb, i, j)
							}
						}
					}
				}
			}
		})
	}
}

func f32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

// TestCompileError: source that does not compile returns a CompileError
// whose log names the source and the line.
func TestCompileError(t *testing.T) {
	for name, d := range drivers(t) {
		t.Run(name, func(t *testing.T) {
			src := "extern \"C\" __global__ void broken(float *y) {\n\ty[0] = undefined_name;\n}\n"
			_, err := d.Compile("broken.cu", src)
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want a CompileError", err)
			}
			if !strings.Contains(ce.Log, "undefined_name") || !strings.Contains(ce.Log, "broken.cu") {
				t.Errorf("log does not point at the error:\n%s", ce.Log)
			}
		})
	}
}

// TestCompileCache: the second compilation of the same source loads the
// cached library (no compiler run): it must still work.
func TestCompileCache(t *testing.T) {
	emulatorOnly(t)
	t.Setenv("NFSCHWINGER_CUDA_CACHE", t.TempDir())
	e, err := NewEmulator()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		m, err := e.Compile("test.cu", testSource)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Function("axpy"); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Function("missing"); err == nil {
			t.Fatal("a kernel that is not in the source was found")
		}
	}
	e.cxx = "/nonexistent-compiler" // a cache hit needs no compiler
	if _, err := e.Compile("test.cu", testSource); err != nil {
		t.Fatalf("cached module: %v", err)
	}
}

// TestLaunchArguments: an int argument (of ambiguous width) is refused.
func TestLaunchArguments(t *testing.T) {
	if err := Launch(&emuFunction{name: "x"}, Dim3{X: 1}, Dim3{X: 1}, 3); err == nil || !strings.Contains(err.Error(), "int") {
		t.Fatalf("error %v, want a refusal of int", err)
	}
}

// TestDriverLoads is the device check's first step: the CUDA driver,
// NVRTC and cuBLAS load and device 0 opens. It logs the device, NVRTC's
// options and the library files the process mapped for them. In the
// device check it fails without a device; elsewhere it skips.
func TestDriverLoads(t *testing.T) {
	r, err := OpenReal(0)
	if err != nil {
		if deviceCheck() || !errors.Is(err, ErrNoDevice) {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	t.Logf("device %s; NVRTC options %v", r.Name(), r.CompileOptions())
	libs, err := MappedLibraries("libcuda", "libnvrtc", "libcublas")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"libcuda", "libnvrtc", "libcublas"} {
		if !slices.ContainsFunc(libs, func(l string) bool { return strings.Contains(filepath.Base(l), want) }) {
			t.Errorf("no %s among the mapped libraries %v", want, libs)
		}
	}
	for _, l := range libs {
		t.Logf("loaded %s", l)
	}
}

// TestMappedLibraries: the emulator's BLAS, which it loads at run time,
// is among the mapped libraries, named by its file; a substring nothing
// matches gives none.
func TestMappedLibraries(t *testing.T) {
	emulatorOnly(t)
	isolateCache(t)
	if _, err := NewEmulator(); err != nil {
		t.Fatal(err)
	}
	libs, err := MappedLibraries("blas")
	if err != nil || len(libs) == 0 || !filepath.IsAbs(libs[0]) {
		t.Fatalf("mapped BLAS libraries %v, %v", libs, err)
	}
	if none, err := MappedLibraries("no-such-library"); err != nil || len(none) != 0 {
		t.Fatalf("no-such-library: %v, %v", none, err)
	}
}

// TestOpenWithoutDriver: without a CUDA driver OpenReal says so with
// ErrNoDevice; a device that does not exist is ErrNoDevice; with
// NFSCHWINGER_CUDA=emulate Open gives the emulator.
func TestOpenWithoutDriver(t *testing.T) {
	r, err := OpenReal(0)
	switch {
	case err == nil:
		t.Logf("a real device is present: %s", r.Name())
	case !errors.Is(err, ErrNoDevice):
		t.Fatalf("OpenReal: %v", err)
	case deviceCheck():
		t.Skip("no CUDA device (the device check's TestDriverLoads says why)")
	}
	if _, err := OpenReal(1 << 20); err == nil || !errors.Is(err, ErrNoDevice) {
		t.Fatalf("device 2^20: %v, want ErrNoDevice", err)
	}
	emulatorOnly(t)
	t.Setenv(EnvMode, "emulate")
	t.Setenv("NFSCHWINGER_CUDA_CACHE", t.TempDir())
	d, err := Open(0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.Name(), "emulator") {
		t.Fatalf("Open with %s=emulate: %s", EnvMode, d.Name())
	}
}

func TestDeviceFor(t *testing.T) {
	for _, c := range []struct{ rank, visible, want int }{{0, 1, 0}, {3, 1, 0}, {0, 4, 0}, {3, 4, 3}, {5, 4, 1}} {
		if got := DeviceFor(c.rank, c.visible); got != c.want {
			t.Errorf("DeviceFor(%d, %d) = %d, want %d", c.rank, c.visible, got, c.want)
		}
	}
	if _, err := DeviceCount(); err != nil && !errors.Is(err, ErrNoDevice) {
		t.Fatalf("DeviceCount: %v", err)
	}
}

// TestSyncDetection: a kernel that reaches __syncthreads through helper
// functions (templates included) runs with a fiber per CUDA thread; one
// that does not, in a loop.
func TestSyncDetection(t *testing.T) {
	src := `
// a comment (with parentheses) before a definition
template <class T> __device__ void inner(T *x) { __syncthreads(); x[0] = 1; }
/* plain(x) is not called here */
__device__ void middle(float *x) { inner<float>(x); }
__device__ void plain(float *x) { x[0] = 2; }
extern "C" __global__ void k_sync(float *x) { middle(x); }
extern "C" __global__ void k_plain(float *x) { plain(x); }
`
	ks, err := parseKernels(src)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, k := range ks {
		got[k.name] = k.sync
	}
	if !got["k_sync"] || got["k_plain"] || len(got) != 2 {
		t.Fatalf("sync detection %v, want k_sync only", got)
	}
}

// bf16 rounds x to bfloat16 (nearest even) as its upper 16 bits.
func bf16(x float32) uint16 {
	u := math.Float32bits(x)
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}

// TestGemmBF16: the float32 inputs rounded to bfloat16 on the device
// (to_bf16, equal to the rounding here bit for bit) and multiplied by
// GemmBF16 (every transpose combination) equal the product of the rounded
// values in float64 up to float32 accumulation (k = 40 terms of size ≈ 1:
// 1e-5 relative to k), and differ from the unrounded product by the
// rounding (the bf16 path is taken).
func TestGemmBF16(t *testing.T) {
	for name, d := range drivers(t) {
		t.Run(name, func(t *testing.T) {
			m, err := d.Compile("test.cu", testSource)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(7, 8))
			const M, N, K = 6, 5, 40
			for _, ta := range []Op{NoTrans, Trans} {
				for _, tb := range []Op{NoTrans, Trans} {
					ra, ca, rb, cb := M, K, K, N
					if ta == Trans {
						ra, ca = K, M
					}
					if tb == Trans {
						rb, cb = N, K
					}
					a, b := make([]float32, ra*ca), make([]float32, rb*cb)
					for _, x := range [][]float32{a, b} {
						for i := range x {
							x[i] = float32(rng.NormFloat64())
						}
					}
					round := func(x []float32) (DevicePtr, []float64) {
						p, err := d.Alloc(2 * len(x))
						if err != nil {
							t.Fatal(err)
						}
						if err := Launch(kernel(t, m, "to_bf16"), Dim3{X: uint32(len(x)+127) / 128}, Dim3{X: 128}, p, upload(t, d, x), uint32(len(x))); err != nil {
							t.Fatal(err)
						}
						got := make([]uint16, len(x))
						download(t, d, got, p)
						r := make([]float64, len(x))
						for i, v := range x {
							if got[i] != bf16(v) {
								t.Fatalf("to_bf16(%v) = %#04x, want %#04x", v, got[i], bf16(v))
							}
							r[i] = float64(math.Float32frombits(uint32(got[i]) << 16))
						}
						return p, r
					}
					pa, ra64 := round(a)
					pb, rb64 := round(b)
					pc := upload(t, d, make([]float32, M*N))
					if err := d.GemmBF16(ta, tb, M, N, K, 1, pa, ra, pb, rb, 0, pc, M); err != nil {
						t.Fatal(err)
					}
					c := make([]float32, M*N)
					download(t, d, c, pc)
					at := func(x []float64, ld, i, j int, tr Op) float64 {
						if tr == Trans {
							i, j = j, i
						}
						return x[j*ld+i]
					}
					maxRounding := 0.0
					for j := range N {
						for i := range M {
							want, exact := 0.0, 0.0
							for l := range K {
								want += at(ra64, ra, i, l, ta) * at(rb64, rb, l, j, tb)
								exact += at(f64(a), ra, i, l, ta) * at(f64(b), rb, l, j, tb)
							}
							if e := math.Abs(float64(c[j*M+i]) - want); e > 1e-5*K {
								t.Fatalf("%v %v: C[%d,%d] = %v, want %v", ta, tb, i, j, c[j*M+i], want)
							}
							maxRounding = max(maxRounding, math.Abs(want-exact))
						}
					}
					if maxRounding < 1e-3 {
						t.Fatalf("%v %v: bf16 rounding changed the product by only %.3g", ta, tb, maxRounding)
					}
				}
			}
		})
	}
}

func f64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// TestZgetrfBatched: the batched complex LU factorizes each matrix of a
// batch as LAPACK does: P·A = L·U rebuilt from the factors and the
// 1-based pivots within 1e-13 of |A|, for n = 1, 5 and 12 with leading
// dimension n + 2; a matrix with a zero column reports info > 0 and does
// not disturb the others.
func TestZgetrfBatched(t *testing.T) {
	for name, d := range drivers(t) {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(8, 1))
			for _, n := range []int{1, 5, 12} {
				const batch = 3
				lda := n + 2
				a := make([]complex128, batch*lda*n)
				for i := range a {
					a[i] = complex(rng.NormFloat64(), rng.NormFloat64())
				}
				for r := range lda { // matrix 1: column 0 zero (singular)
					a[lda*n+r] = 0
				}
				orig := append([]complex128(nil), a...)
				p := upload(t, d, a)
				defer d.Free(p)
				ptrs := make([]uint64, batch)
				for b := range ptrs {
					ptrs[b] = uint64(p) + uint64(16*lda*n*b)
				}
				pp := upload(t, d, ptrs)
				defer d.Free(pp)
				piv, info := upload(t, d, make([]int32, n*batch)), upload(t, d, make([]int32, batch))
				defer d.Free(piv)
				defer d.Free(info)
				if err := d.ZgetrfBatched(n, pp, lda, piv, info, batch); err != nil {
					t.Fatal(err)
				}
				lu, ip, inf := make([]complex128, len(a)), make([]int32, n*batch), make([]int32, batch)
				download(t, d, lu, p)
				download(t, d, ip, piv)
				download(t, d, inf, info)
				if inf[0] != 0 || inf[2] != 0 || inf[1] <= 0 {
					t.Fatalf("n = %d: info %v, want 0, > 0, 0", n, inf)
				}
				for _, b := range []int{0, 2} {
					at := func(m []complex128, r, c int) complex128 { return m[lda*n*b+c*lda+r] } // column-major
					// P·A: apply the row interchanges to A in order.
					pa := make([][]complex128, n)
					for r := range n {
						pa[r] = make([]complex128, n)
						for c := range n {
							pa[r][c] = at(orig, r, c)
						}
					}
					for k := range n {
						j := int(ip[n*b+k]) - 1
						pa[k], pa[j] = pa[j], pa[k]
					}
					for r := range n {
						for c := range n {
							var s complex128
							for k := 0; k <= min(r, c); k++ {
								l := complex(1, 0)
								if k < r {
									l = at(lu, r, k)
								}
								s += l * at(lu, k, c)
							}
							if e := cmplx.Abs(s - pa[r][c]); e > 1e-13*float64(n) {
								t.Fatalf("n = %d, matrix %d: (LU)[%d][%d] = %v, (PA) %v", n, b, r, c, s, pa[r][c])
							}
						}
					}
				}
			}
		})
	}
}

// TestZgemmStridedBatched: each product of the batch equals the product
// summed here (within 1e-13 of its size), for both operand orientations,
// with leading dimensions above the rows and strides above the matrices,
// alpha and beta complex; the memory between the matrices is untouched.
func TestZgemmStridedBatched(t *testing.T) {
	for name, d := range drivers(t) {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(9, 2))
			const m, n, k, batch = 3, 4, 5, 3
			alpha, beta := complex(-1, 0.5), complex(0.25, -2)
			for _, tr := range []struct{ a, b Op }{{NoTrans, NoTrans}, {Trans, NoTrans}, {NoTrans, Trans}} {
				ar, ac := m, k // the stored A
				if tr.a == Trans {
					ar, ac = k, m
				}
				br, bc := k, n
				if tr.b == Trans {
					br, bc = n, k
				}
				lda, ldb, ldc := ar+1, br+2, m+1
				sa, sb, sc := int64(lda*ac+3), int64(ldb*bc+1), int64(ldc*n+2)
				fill := func(l int) []complex128 {
					v := make([]complex128, l)
					for i := range v {
						v[i] = complex(rng.NormFloat64(), rng.NormFloat64())
					}
					return v
				}
				a, b, c := fill(int(sa)*batch), fill(int(sb)*batch), fill(int(sc)*batch)
				pa, pb, pc := upload(t, d, a), upload(t, d, b), upload(t, d, c)
				defer d.Free(pa)
				defer d.Free(pb)
				defer d.Free(pc)
				if err := d.ZgemmStridedBatched(tr.a, tr.b, m, n, k, alpha, pa, lda, sa, pb, ldb, sb, beta, pc, ldc, sc, batch); err != nil {
					t.Fatal(err)
				}
				got := make([]complex128, len(c))
				download(t, d, got, pc)
				want := slices.Clone(c)
				for i := range batch {
					opA := func(r, q int) complex128 {
						if tr.a == Trans {
							r, q = q, r
						}
						return a[int(sa)*i+q*lda+r]
					}
					opB := func(r, q int) complex128 {
						if tr.b == Trans {
							r, q = q, r
						}
						return b[int(sb)*i+q*ldb+r]
					}
					for r := range m {
						for q := range n {
							var s complex128
							for l := range k {
								s += opA(r, l) * opB(l, q)
							}
							p := int(sc)*i + q*ldc + r
							want[p] = alpha*s + beta*c[p]
						}
					}
				}
				for i := range got {
					if cmplx.Abs(got[i]-want[i]) > 1e-13*float64(k) {
						t.Fatalf("ops %v: element %d: %v, want %v", tr, i, got[i], want[i])
					}
				}
			}
		})
	}
}
