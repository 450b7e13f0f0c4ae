package cuda

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

//go:embed emulator.h
var emulatorPrelude string

// Emulator is the Driver that runs kernels on the CPU (see the package
// doc). Device memory is the C heap; products are OpenBLAS's cblas_sgemm
// and cblas_dgemm in column-major order, cuBLAS's convention.
type Emulator struct {
	cxx, cxxVersion string
	cacheDir        string

	malloc      func(n uintptr) uintptr
	free        func(p uintptr)
	memcpyHD    func(dst uintptr, src unsafe.Pointer, n uintptr) uintptr
	memcpyDH    func(dst unsafe.Pointer, src uintptr, n uintptr) uintptr
	memcpyDD    func(dst, src uintptr, n uintptr) uintptr
	limit, used int               // device memory: EnvEmulatorMemory's bytes, and those allocated
	sizes       map[DevicePtr]int // the size of every allocation
	toDevice    Traffic           // host-to-device copies (Transferred)
	toHost      Traffic           // device-to-host copies
	sgemm       func(order, ta, tb, m, n, k int32, alpha float32, a uintptr, lda int32, b uintptr, ldb int32, beta float32, c uintptr, ldc int32)
	dgemm       func(order, ta, tb, m, n, k int32, alpha float64, a uintptr, lda int32, b uintptr, ldb int32, beta float64, c uintptr, ldc int32)
	zgemm       func(order, ta, tb, m, n, k int32, alpha *complex128, a uintptr, lda int32, b uintptr, ldb int32, beta *complex128, c uintptr, ldc int32)
	zgetrf      func(m, n *int32, a uintptr, lda *int32, ipiv uintptr, info *int32) // LAPACK's Fortran zgetrf_
	zgetri      func(n *int32, a uintptr, lda *int32, ipiv uintptr, work uintptr, lwork *int32, info *int32)
}

// CBLAS's enumerations.
const (
	cblasColMajor = 102
	cblasNoTrans  = 111
	cblasTrans    = 112
)

// dlopenFirst opens the first library of names that loads.
func dlopenFirst(names ...string) (uintptr, error) {
	var errs []string
	for _, n := range names {
		h, err := purego.Dlopen(n, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err == nil {
			return h, nil
		}
		errs = append(errs, err.Error())
	}
	return 0, fmt.Errorf("none of %s loads: %s", strings.Join(names, ", "), strings.Join(errs, "; "))
}

// emulatorFlags are the C++ compiler's flags for the emulated kernels:
// optimized, and every multiply and add rounded on its own as the CPU code
// and the device (Real.CompileOptions) do.
var emulatorFlags = []string{"-std=c++20", "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-pthread"}

// bind registers the C function name of library h into fptr.
func bind(fptr any, h uintptr, name string) error {
	sym, err := purego.Dlsym(h, name)
	if err != nil {
		return fmt.Errorf("symbol %s: %w", name, err)
	}
	purego.RegisterFunc(fptr, sym)
	return nil
}

// EnvEmulatorMemory sets the emulator's device memory in bytes (default
// DefaultEmulatorMemory): allocations beyond it fail as on a full device.
const EnvEmulatorMemory = "NFSCHWINGER_EMULATOR_MEMORY"

// DefaultEmulatorMemory is the emulator's device memory, 8 GiB: host
// memory, so a run that a real device would refuse does not take the
// machine's.
const DefaultEmulatorMemory = 8 << 30

// NewEmulator returns the emulated device. It needs a C++20 compiler ($CXX,
// else g++) and OpenBLAS's CBLAS; compiled kernels are cached under
// $NFSCHWINGER_CUDA_CACHE, else the user's cache directory, by the hash of
// their source, the prelude and the compiler's version.
func NewEmulator() (*Emulator, error) {
	e := &Emulator{cxx: os.Getenv("CXX"), limit: DefaultEmulatorMemory, sizes: map[DevicePtr]int{}}
	if v := os.Getenv(EnvEmulatorMemory); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("cuda emulator: %s = %q: want a positive number of bytes", EnvEmulatorMemory, v)
		}
		e.limit = int(n)
	}
	if e.cxx == "" {
		e.cxx = "g++"
	}
	out, err := exec.Command(e.cxx, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("cuda emulator: C++ compiler %s: %w", e.cxx, err)
	}
	e.cxxVersion = strings.SplitN(string(out), "\n", 2)[0]
	if e.cacheDir, err = cacheDir("emulator"); err != nil {
		return nil, err
	}
	libc, err := dlopenFirst("libc.so.6")
	if err != nil {
		return nil, fmt.Errorf("cuda emulator: %w", err)
	}
	blas, err := dlopenFirst("libopenblas.so.0", "libcblas.so.3", "libblas.so.3")
	if err != nil {
		return nil, fmt.Errorf("cuda emulator: %w", err)
	}
	lapack, err := dlopenFirst("libopenblas.so.0", "liblapack.so.3")
	if err != nil {
		return nil, fmt.Errorf("cuda emulator: %w", err)
	}
	for _, b := range []struct {
		fptr any
		h    uintptr
		name string
	}{
		{&e.zgetrf, lapack, "zgetrf_"}, {&e.zgetri, lapack, "zgetri_"},
		{&e.malloc, libc, "malloc"}, {&e.free, libc, "free"},
		{&e.memcpyHD, libc, "memcpy"}, {&e.memcpyDH, libc, "memcpy"}, {&e.memcpyDD, libc, "memcpy"},
		{&e.sgemm, blas, "cblas_sgemm"}, {&e.dgemm, blas, "cblas_dgemm"}, {&e.zgemm, blas, "cblas_zgemm"},
	} {
		if err := bind(b.fptr, b.h, b.name); err != nil {
			return nil, fmt.Errorf("cuda emulator: %w", err)
		}
	}
	return e, nil
}

// cacheDir returns (and creates) the kernel cache directory for kind.
func cacheDir(kind string) (string, error) {
	dir := os.Getenv("NFSCHWINGER_CUDA_CACHE")
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		dir = filepath.Join(base, "nfschwinger", "cuda")
	}
	dir = filepath.Join(dir, kind)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cuda: kernel cache: %w", err)
	}
	return dir, nil
}

// Name implements Driver.
func (e *Emulator) Name() string { return "emulator (" + e.cxxVersion + ")" }

// Alloc implements Driver.
func (e *Emulator) Alloc(bytes int) (DevicePtr, error) {
	if bytes > e.limit-e.used {
		return 0, fmt.Errorf("cuda emulator: out of memory allocating %d bytes (%d of its %d in use)", bytes, e.used, e.limit)
	}
	p := e.malloc(uintptr(max(bytes, 1)))
	if p == 0 {
		return 0, fmt.Errorf("cuda emulator: out of memory allocating %d bytes", bytes)
	}
	e.sizes[DevicePtr(p)] = bytes
	e.used += bytes
	return DevicePtr(p), nil
}

// Used returns the bytes of device memory allocated and not freed.
func (e *Emulator) Used() int { return e.used }

// Free implements Driver.
func (e *Emulator) Free(p DevicePtr) {
	e.used -= e.sizes[p]
	delete(e.sizes, p)
	e.free(uintptr(p))
}

// CopyHtoD implements Driver.
func (e *Emulator) CopyHtoD(dst DevicePtr, src unsafe.Pointer, bytes int) error {
	e.memcpyHD(uintptr(dst), src, uintptr(bytes))
	e.toDevice.Bytes += int64(bytes)
	e.toDevice.Copies++
	return nil
}

// CopyDtoH implements Driver.
func (e *Emulator) CopyDtoH(dst unsafe.Pointer, src DevicePtr, bytes int) error {
	e.memcpyDH(dst, uintptr(src), uintptr(bytes))
	e.toHost.Bytes += int64(bytes)
	e.toHost.Copies++
	return nil
}

// Traffic counts the copies between host and device, one direction.
type Traffic struct {
	Bytes  int64 // bytes copied
	Copies int64 // calls
}

// Transferred returns the copies to the device and to the host since
// the emulator was made: what would cross the PCIe bus.
func (e *Emulator) Transferred() (toDevice, toHost Traffic) { return e.toDevice, e.toHost }

func cblasOp(o Op) int32 {
	if o == Trans {
		return cblasTrans
	}
	return cblasNoTrans
}

// Sgemm implements Driver with cblas_sgemm in column-major order.
func (e *Emulator) Sgemm(ta, tb Op, m, n, k int, alpha float32, a DevicePtr, lda int, b DevicePtr, ldb int, beta float32, c DevicePtr, ldc int) error {
	e.sgemm(cblasColMajor, cblasOp(ta), cblasOp(tb), int32(m), int32(n), int32(k), alpha, uintptr(a), int32(lda), uintptr(b), int32(ldb), beta, uintptr(c), int32(ldc))
	return nil
}

// Dgemm implements Driver with cblas_dgemm in column-major order.
func (e *Emulator) Dgemm(ta, tb Op, m, n, k int, alpha float64, a DevicePtr, lda int, b DevicePtr, ldb int, beta float64, c DevicePtr, ldc int) error {
	e.dgemm(cblasColMajor, cblasOp(ta), cblasOp(tb), int32(m), int32(n), int32(k), alpha, uintptr(a), int32(lda), uintptr(b), int32(ldb), beta, uintptr(c), int32(ldc))
	return nil
}

// GemmBF16 implements Driver: the bfloat16 operands widened to float32
// (exactly) and multiplied by cblas_sgemm, float32 accumulation as
// CUBLAS_COMPUTE_32F.
func (e *Emulator) GemmBF16(ta, tb Op, m, n, k int, alpha float32, a DevicePtr, lda int, b DevicePtr, ldb int, beta float32, c DevicePtr, ldc int) error {
	cols := func(t Op, rows, cols int) int { // columns of the stored matrix
		if t == Trans {
			return rows
		}
		return cols
	}
	// The widened operands are the emulator's own scratch (cuBLAS keeps
	// its workspace outside the caller's allocations too): Go memory,
	// pinned for the call.
	wa := e.widen(a, lda*cols(ta, m, k))
	wb := e.widen(b, ldb*cols(tb, k, n))
	err := e.Sgemm(ta, tb, m, n, k, alpha, DevicePtr(unsafe.Pointer(&wa[0])), lda, DevicePtr(unsafe.Pointer(&wb[0])), ldb, beta, c, ldc)
	runtime.KeepAlive(wa)
	runtime.KeepAlive(wb)
	return err
}

// ZgemmStridedBatched implements Driver with cblas_zgemm in column-major
// order, one product after the other.
func (e *Emulator) ZgemmStridedBatched(ta, tb Op, m, n, k int, alpha complex128, a DevicePtr, lda int, strideA int64, b DevicePtr, ldb int, strideB int64,
	beta complex128, c DevicePtr, ldc int, strideC int64, batch int) error {
	for i := range int64(batch) {
		e.zgemm(cblasColMajor, cblasOp(ta), cblasOp(tb), int32(m), int32(n), int32(k), &alpha, uintptr(a)+uintptr(16*i*strideA), int32(lda),
			uintptr(b)+uintptr(16*i*strideB), int32(ldb), &beta, uintptr(c)+uintptr(16*i*strideC), int32(ldc))
	}
	return nil
}

// ZgetrfBatched implements Driver with LAPACK's zgetrf, one matrix after
// the other (device memory is host memory).
func (e *Emulator) ZgetrfBatched(n int, aptrs DevicePtr, lda int, piv, info DevicePtr, batch int) error {
	ptrs := make([]uint64, batch)
	if err := Download(e, ptrs, aptrs); err != nil {
		return err
	}
	nn, ld := int32(n), int32(lda)
	for b, a := range ptrs {
		var inf int32
		e.zgetrf(&nn, &nn, uintptr(a), &ld, uintptr(piv)+uintptr(4*n*b), &inf)
		if inf < 0 {
			return fmt.Errorf("cuda emulator: zgetrf: argument %d illegal", -inf)
		}
		e.memcpyHD(uintptr(info)+uintptr(4*b), unsafe.Pointer(&inf), 4)
	}
	return nil
}

// ZgetriBatched implements Driver with LAPACK's zgetri on a copy of each
// factorized matrix (column by column: the leading dimensions may
// differ).
func (e *Emulator) ZgetriBatched(n int, aptrs DevicePtr, lda int, piv, cptrs DevicePtr, ldc int, info DevicePtr, batch int) error {
	ap, cp := make([]uint64, batch), make([]uint64, batch)
	if err := Download(e, ap, aptrs); err != nil {
		return err
	}
	if err := Download(e, cp, cptrs); err != nil {
		return err
	}
	nn, ld, lw := int32(n), int32(ldc), int32(64*max(n, 1))
	work := make([]complex128, lw)
	for b := range ap {
		for c := range n {
			e.memcpyDD(uintptr(cp[b])+uintptr(16*c*ldc), uintptr(ap[b])+uintptr(16*c*lda), uintptr(16*n))
		}
		var inf int32
		e.zgetri(&nn, uintptr(cp[b]), &ld, uintptr(piv)+uintptr(4*n*b), uintptr(unsafe.Pointer(&work[0])), &lw, &inf)
		if inf < 0 {
			return fmt.Errorf("cuda emulator: zgetri: argument %d illegal", -inf)
		}
		e.memcpyHD(uintptr(info)+uintptr(4*b), unsafe.Pointer(&inf), 4)
	}
	runtime.KeepAlive(work)
	return nil
}

// widen returns the n bfloat16 values at p as float32 bit patterns.
func (e *Emulator) widen(p DevicePtr, n int) []uint32 {
	h := make([]uint16, max(n, 1))
	e.memcpyDH(unsafe.Pointer(&h[0]), uintptr(p), uintptr(2*n))
	f := make([]uint32, len(h))
	for i, v := range h {
		f[i] = uint32(v) << 16
	}
	return f
}

// Synchronize implements Driver: the emulator runs every call to its end.
func (e *Emulator) Synchronize() error { return nil }

// Close implements Driver.
func (e *Emulator) Close() error { return nil }

// kernelSig matches the signature of an extern "C" __global__ kernel.
var kernelSig = regexp.MustCompile(`extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)\s*\{`)

// emulatedKernel is what the emulator learned of one kernel from its source.
type emulatedKernel struct {
	name  string
	types []string // parameter types, qualifiers kept, __restrict__ dropped
	sync  bool     // it calls __syncthreads (itself or through the source's functions)
}

// parseKernels finds the kernels of source.
func parseKernels(source string) ([]emulatedKernel, error) {
	source = stripComments(source)
	syncs := syncFunctions(source)
	var ks []emulatedKernel
	for _, m := range kernelSig.FindAllStringSubmatchIndex(source, -1) {
		k := emulatedKernel{name: source[m[2]:m[3]]}
		if params := strings.TrimSpace(source[m[4]:m[5]]); params != "" && params != "void" {
			for _, p := range strings.Split(params, ",") {
				p = strings.TrimSpace(strings.ReplaceAll(p, "__restrict__", ""))
				i := strings.LastIndexFunc(p, func(r rune) bool { return !isIdent(r) })
				if i < 0 {
					return nil, fmt.Errorf("kernel %s: parameter %q has no type", k.name, p)
				}
				k.types = append(k.types, strings.TrimSpace(p[:i+1]))
			}
		}
		k.sync = syncs[k.name]
		ks = append(ks, k)
	}
	if len(ks) == 0 {
		return nil, fmt.Errorf("no extern \"C\" __global__ kernel in the source")
	}
	return ks, nil
}

// syncFunctions returns the functions of source (top-level definitions,
// by name; comments already stripped) that call __syncthreads, directly or
// through other functions of the source: their kernels need a fiber per
// CUDA thread.
func syncFunctions(source string) map[string]bool {
	bodies := map[string]string{}
	depth, headerStart, bodyStart := 0, 0, 0
	name := ""
	for i := 0; i < len(source); i++ {
		switch source[i] {
		case '{':
			if depth == 0 {
				header := source[headerStart:i]
				name = ""
				if p := strings.Index(header, "("); p > 0 {
					f := strings.FieldsFunc(header[:p], func(r rune) bool { return !isIdent(r) })
					if len(f) > 0 {
						name = f[len(f)-1]
					}
				}
				bodyStart = i
			}
			depth++
		case '}':
			if depth--; depth == 0 {
				if name != "" {
					bodies[name] += source[bodyStart : i+1]
				}
				headerStart = i + 1
			}
		case ';':
			if depth == 0 {
				headerStart = i + 1
			}
		}
	}
	sync := map[string]bool{}
	calls := []*regexp.Regexp{regexp.MustCompile(`\b__syncthreads\s*\(`)} // a call of any sync function
	for changed := true; changed; {
		changed = false
		for n, body := range bodies {
			if sync[n] {
				continue
			}
			for _, c := range calls {
				if c.MatchString(body) {
					sync[n], changed = true, true
					calls = append(calls, regexp.MustCompile(`\b`+regexp.QuoteMeta(n)+`\s*[(<]`))
					break
				}
			}
		}
	}
	return sync
}

// comments matches C and C++ comments (not inside string literals, which
// kernel sources do not have).
var comments = regexp.MustCompile(`(?s)//[^\n]*|/\*.*?\*/`)

// stripComments blanks the comments of source.
func stripComments(source string) string { return comments.ReplaceAllString(source, " ") }

func isIdent(r rune) bool {
	return r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
}

// launcherSource is the C++ entry point of kernel k:
// nfemu_launch_<name>(void **params, gx, gy, gz, bx, by, bz).
func launcherSource(k emulatedKernel) string {
	args := make([]string, len(k.types))
	for i, t := range k.types {
		args[i] = fmt.Sprintf("*(%s *)params[%d]", t, i)
	}
	return fmt.Sprintf(`
extern "C" void nfemu_launch_%s(void **params, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {
	(void)params;
	nfemu::run<%v>(dim3{gx, gy, gz}, dim3{bx, by, bz}, [&] { %s(%s); });
}
`, k.name, k.sync, k.name, strings.Join(args, ", "))
}

// Compile implements Driver: the prelude, the source and a launcher per
// kernel, compiled with the C++ compiler into a shared library (cached),
// loaded with dlopen. A compiler error returns its output.
func (e *Emulator) Compile(name, source string) (Module, error) {
	ks, err := parseKernels(source)
	if err != nil {
		return nil, fmt.Errorf("cuda emulator: %s: %w", name, err)
	}
	var b strings.Builder
	b.WriteString(emulatorPrelude)
	fmt.Fprintf(&b, "#line 1 %q\n", name)
	b.WriteString(source)
	b.WriteString("\n")
	for _, k := range ks {
		b.WriteString(launcherSource(k))
	}
	full := b.String()
	sum := sha256.Sum256([]byte(full + "\x00" + e.cxxVersion + "\x00" + strings.Join(emulatorFlags, " ")))
	lib := filepath.Join(e.cacheDir, hex.EncodeToString(sum[:16])+".so")
	if _, err := os.Stat(lib); err != nil {
		if err := e.build(name, full, lib); err != nil {
			return nil, err
		}
	}
	h, err := purego.Dlopen(lib, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("cuda emulator: %s: load %s: %w", name, lib, err)
	}
	mod := &emuModule{name: name, fns: map[string]uintptr{}}
	for _, k := range ks {
		sym, err := purego.Dlsym(h, "nfemu_launch_"+k.name)
		if err != nil {
			return nil, fmt.Errorf("cuda emulator: %s: %w", name, err)
		}
		mod.fns[k.name] = sym
	}
	return mod, nil
}

// build compiles full into the shared library lib (atomically: a partial
// library never has the cache's name).
func (e *Emulator) build(name, full, lib string) error {
	dir, err := os.MkdirTemp(e.cacheDir, "build-")
	if err != nil {
		return fmt.Errorf("cuda emulator: %w", err)
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "kernels.cpp")
	if err := os.WriteFile(src, []byte(full), 0o644); err != nil {
		return fmt.Errorf("cuda emulator: %w", err)
	}
	tmp := filepath.Join(dir, "kernels.so")
	cmd := exec.Command(e.cxx, append(emulatorFlags, "-o", tmp, src)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return &CompileError{Name: name, Log: string(out), Err: err}
	}
	if err := os.Rename(tmp, lib); err != nil {
		return fmt.Errorf("cuda emulator: %w", err)
	}
	return nil
}

// CompileError is a kernel source that did not compile: Log is NVRTC's
// program log, or the emulator's compiler output.
type CompileError struct {
	Name string
	Log  string
	Err  error
}

// Error names the source and carries the compiler's log.
func (e *CompileError) Error() string {
	return fmt.Sprintf("cuda: compiling %s: %v\n%s", e.Name, e.Err, strings.TrimSpace(e.Log))
}

// Unwrap returns the compiler's failure.
func (e *CompileError) Unwrap() error { return e.Err }

type emuModule struct {
	name string
	fns  map[string]uintptr
}

func (m *emuModule) Function(name string) (Function, error) {
	f, ok := m.fns[name]
	if !ok {
		return nil, fmt.Errorf("cuda emulator: %s has no kernel %q", m.name, name)
	}
	return &emuFunction{name: name, sym: f}, nil
}

type emuFunction struct {
	name string
	sym  uintptr
}

func (f *emuFunction) launch(grid, block Dim3, params []unsafe.Pointer) error {
	var p uintptr
	if len(params) > 0 {
		p = uintptr(unsafe.Pointer(&params[0]))
	}
	purego.SyscallN(f.sym, p, uintptr(grid.X), uintptr(grid.Y), uintptr(grid.Z), uintptr(block.X), uintptr(block.Y), uintptr(block.Z))
	runtime.KeepAlive(params)
	return nil
}
