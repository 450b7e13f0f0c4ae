package cuda

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"
)

// Real is a CUDA device through the driver API, NVRTC and cuBLAS, loaded
// at run time (purego). It uses the device's primary context on the
// default stream.
type Real struct {
	name     string
	major    int32
	minor    int32
	nvrtcVer string
	ctx      uintptr
	blas     uintptr // cublasHandle_t

	cuGetErrorString func(res int32, str **byte) int32
	cuMemAlloc       func(p *uint64, n uintptr) int32
	cuMemFree        func(p uint64) int32
	cuMemcpyHtoD     func(dst uint64, src unsafe.Pointer, n uintptr) int32
	cuMemcpyDtoH     func(dst unsafe.Pointer, src uint64, n uintptr) int32
	cuModuleLoadData func(mod *uintptr, image unsafe.Pointer) int32
	cuModuleGetFunc  func(fn *uintptr, mod uintptr, name string) int32
	cuLaunchKernel   func(f uintptr, gx, gy, gz, bx, by, bz, shared uint32, stream uintptr, params unsafe.Pointer, extra unsafe.Pointer) int32
	cuCtxSynchronize func() int32
	cuCtxSetCurrent  func(ctx uintptr) int32

	nvrtcCreateProgram  func(prog *uintptr, src, name string, nHeaders int32, headers, includeNames unsafe.Pointer) int32
	nvrtcCompileProgram func(prog uintptr, nOpts int32, opts unsafe.Pointer) int32
	nvrtcGetLogSize     func(prog uintptr, n *uintptr) int32
	nvrtcGetLog         func(prog uintptr, log unsafe.Pointer) int32
	nvrtcGetCUBINSize   func(prog uintptr, n *uintptr) int32
	nvrtcGetCUBIN       func(prog uintptr, bin unsafe.Pointer) int32
	nvrtcDestroyProgram func(prog *uintptr) int32

	cublasDestroy func(h uintptr) int32
	cublasSgemm   func(h uintptr, ta, tb, m, n, k int32, alpha *float32, a uintptr, lda int32, b uintptr, ldb int32, beta *float32, c uintptr, ldc int32) int32
	cublasDgemm   func(h uintptr, ta, tb, m, n, k int32, alpha *float64, a uintptr, lda int32, b uintptr, ldb int32, beta *float64, c uintptr, ldc int32) int32
	cublasGemmEx  func(h uintptr, ta, tb, m, n, k int32, alpha *float32, a uintptr, atype, lda int32, b uintptr, btype, ldb int32,
		beta *float32, c uintptr, ctype, ldc int32, compute, algo int32) int32
	cublasZgetrfBatched func(h uintptr, n int32, aptrs uintptr, lda int32, piv, info uintptr, batch int32) int32
	cublasZgemmSB       func(h uintptr, ta, tb, m, n, k int32, alpha *complex128, a uintptr, lda int32, sa int64, b uintptr, ldb int32, sb int64,
		beta *complex128, c uintptr, ldc int32, sc int64, batch int32) int32
	cublasZgetriBatched func(h uintptr, n int32, aptrs uintptr, lda int32, piv, cptrs uintptr, ldc int32, info uintptr, batch int32) int32
}

// cuBLAS and CUDA enumerations of cublasGemmEx (library_types.h, cublas_api.h).
const (
	cudaR32F         = 0
	cudaR16BF        = 14
	cublasCompute32F = 68
	cublasGemmDflt   = -1
)

// Library names tried, newest first.
var (
	libCUDA   = []string{"libcuda.so.1", "libcuda.so"}
	libNVRTC  = []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}
	libCUBLAS = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so"}
)

// CUDA driver attributes used.
const (
	attrComputeMajor = 75
	attrComputeMinor = 76
)

// DeviceCount returns the number of devices the CUDA driver sees (those of
// CUDA_VISIBLE_DEVICES when it is set), an error wrapping ErrNoDevice when
// the driver does not load or does not initialize.
func DeviceCount() (int, error) {
	cu, err := dlopenFirst(libCUDA...)
	if err != nil {
		return 0, fmt.Errorf("cuda: %w: the driver does not load (%v)", ErrNoDevice, err)
	}
	var cuInit func(flags uint32) int32
	var cuDeviceGetCount func(n *int32) int32
	if err := bind(&cuInit, cu, "cuInit"); err != nil {
		return 0, fmt.Errorf("cuda: driver: %w", err)
	}
	if err := bind(&cuDeviceGetCount, cu, "cuDeviceGetCount"); err != nil {
		return 0, fmt.Errorf("cuda: driver: %w", err)
	}
	if res := cuInit(0); res != 0 {
		return 0, fmt.Errorf("cuda: %w: cuInit: CUresult %d", ErrNoDevice, res)
	}
	var n int32
	if res := cuDeviceGetCount(&n); res != 0 {
		return 0, fmt.Errorf("cuda: %w: cuDeviceGetCount: CUresult %d", ErrNoDevice, res)
	}
	return int(n), nil
}

// OpenReal opens device ordinal device of the CUDA driver. It returns an
// error wrapping ErrNoDevice when the driver does not load, cuInit fails
// or there is no such device, and another error when NVRTC or cuBLAS is
// missing.
func OpenReal(device int) (*Real, error) {
	n, err := DeviceCount() // loads and initializes the driver
	if err != nil {
		return nil, err
	}
	if device < 0 || device >= n {
		return nil, fmt.Errorf("cuda: %w: device %d of %d visible", ErrNoDevice, device, n)
	}
	cu, err := dlopenFirst(libCUDA...) // the handle DeviceCount loaded
	if err != nil {
		return nil, fmt.Errorf("cuda: %w: the driver does not load (%v)", ErrNoDevice, err)
	}
	// The context made current below must stay current through
	// cublasCreate: one OS thread for the whole of OpenReal.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := &Real{}
	var cuDeviceGet func(d *int32, ordinal int32) int32
	var cuDeviceGetName func(name unsafe.Pointer, n int32, d int32) int32
	var cuDeviceGetAttribute func(v *int32, attr int32, d int32) int32
	var cuPrimaryCtxRetain func(ctx *uintptr, d int32) int32
	for _, b := range []struct {
		fptr any
		name string
	}{
		{&cuDeviceGet, "cuDeviceGet"},
		{&cuDeviceGetName, "cuDeviceGetName"}, {&cuDeviceGetAttribute, "cuDeviceGetAttribute"},
		{&cuPrimaryCtxRetain, "cuDevicePrimaryCtxRetain"}, {&r.cuCtxSetCurrent, "cuCtxSetCurrent"},
		{&r.cuGetErrorString, "cuGetErrorString"}, {&r.cuMemAlloc, "cuMemAlloc_v2"}, {&r.cuMemFree, "cuMemFree_v2"},
		{&r.cuMemcpyHtoD, "cuMemcpyHtoD_v2"}, {&r.cuMemcpyDtoH, "cuMemcpyDtoH_v2"},
		{&r.cuModuleLoadData, "cuModuleLoadData"}, {&r.cuModuleGetFunc, "cuModuleGetFunction"},
		{&r.cuLaunchKernel, "cuLaunchKernel"}, {&r.cuCtxSynchronize, "cuCtxSynchronize"},
	} {
		if err := bind(b.fptr, cu, b.name); err != nil {
			return nil, fmt.Errorf("cuda: driver: %w", err)
		}
	}
	var d int32
	if err := r.check("cuDeviceGet", cuDeviceGet(&d, int32(device))); err != nil {
		return nil, err
	}
	buf := make([]byte, 256)
	if err := r.check("cuDeviceGetName", cuDeviceGetName(unsafe.Pointer(&buf[0]), int32(len(buf)), d)); err != nil {
		return nil, err
	}
	r.name = strings.TrimRight(string(buf), "\x00")
	if err := r.check("cuDeviceGetAttribute", cuDeviceGetAttribute(&r.major, attrComputeMajor, d)); err != nil {
		return nil, err
	}
	if err := r.check("cuDeviceGetAttribute", cuDeviceGetAttribute(&r.minor, attrComputeMinor, d)); err != nil {
		return nil, err
	}
	if err := r.check("cuDevicePrimaryCtxRetain", cuPrimaryCtxRetain(&r.ctx, d)); err != nil {
		return nil, err
	}
	// The context is current per OS thread, and a goroutine moves
	// between threads: every call below pins its goroutine to its thread
	// and makes the context current there first (pin).
	if err := r.check("cuCtxSetCurrent", r.cuCtxSetCurrent(r.ctx)); err != nil {
		return nil, err
	}
	if err := r.loadNVRTC(); err != nil {
		return nil, err
	}
	if err := r.loadCUBLAS(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Real) loadNVRTC() error {
	h, err := dlopenFirst(libNVRTC...)
	if err != nil {
		return fmt.Errorf("cuda: NVRTC: %w", err)
	}
	var version func(major, minor *int32) int32
	for _, b := range []struct {
		fptr any
		name string
	}{
		{&version, "nvrtcVersion"}, {&r.nvrtcCreateProgram, "nvrtcCreateProgram"},
		{&r.nvrtcCompileProgram, "nvrtcCompileProgram"}, {&r.nvrtcGetLogSize, "nvrtcGetProgramLogSize"},
		{&r.nvrtcGetLog, "nvrtcGetProgramLog"}, {&r.nvrtcGetCUBINSize, "nvrtcGetCUBINSize"},
		{&r.nvrtcGetCUBIN, "nvrtcGetCUBIN"}, {&r.nvrtcDestroyProgram, "nvrtcDestroyProgram"},
	} {
		if err := bind(b.fptr, h, b.name); err != nil {
			return fmt.Errorf("cuda: NVRTC: %w", err)
		}
	}
	var ma, mi int32
	version(&ma, &mi)
	r.nvrtcVer = fmt.Sprintf("%d.%d", ma, mi)
	return nil
}

func (r *Real) loadCUBLAS() error {
	h, err := dlopenFirst(libCUBLAS...)
	if err != nil {
		return fmt.Errorf("cuda: cuBLAS: %w", err)
	}
	var create func(h *uintptr) int32
	for _, b := range []struct {
		fptr any
		name string
	}{{&create, "cublasCreate_v2"}, {&r.cublasDestroy, "cublasDestroy_v2"}, {&r.cublasSgemm, "cublasSgemm_v2"}, {&r.cublasDgemm, "cublasDgemm_v2"}, {&r.cublasGemmEx, "cublasGemmEx"},
		{&r.cublasZgetrfBatched, "cublasZgetrfBatched"}, {&r.cublasZgetriBatched, "cublasZgetriBatched"},
		{&r.cublasZgemmSB, "cublasZgemmStridedBatched"}} {
		if err := bind(b.fptr, h, b.name); err != nil {
			return fmt.Errorf("cuda: cuBLAS: %w", err)
		}
	}
	if st := create(&r.blas); st != 0 {
		return fmt.Errorf("cuda: cublasCreate: status %d", st)
	}
	return nil
}

// errString names a CUresult.
func (r *Real) errString(res int32) string {
	var p *byte
	if r.cuGetErrorString == nil || r.cuGetErrorString(res, &p) != 0 || p == nil {
		return fmt.Sprintf("CUresult %d", res)
	}
	return fmt.Sprintf("%s (CUresult %d)", goString(p), res)
}

// goString copies the NUL-terminated C string at p (C memory).
func goString(p *byte) string {
	var b []byte
	for i := 0; ; i++ {
		c := *(*byte)(unsafe.Add(unsafe.Pointer(p), i))
		if c == 0 {
			return string(b)
		}
		b = append(b, c)
	}
}

func (r *Real) check(call string, res int32) error {
	if res != 0 {
		return fmt.Errorf("cuda: %s: %s", call, r.errString(res))
	}
	return nil
}

// Name implements Driver.
func (r *Real) Name() string {
	return fmt.Sprintf("%s (sm_%d%d, NVRTC %s)", r.name, r.major, r.minor, r.nvrtcVer)
}

// pin locks the calling goroutine to its OS thread and makes the device's
// context current there (a goroutine may run on another thread than the
// one of the last call); the returned function unlocks it.
func (r *Real) pin() (unpin func()) {
	runtime.LockOSThread()
	r.cuCtxSetCurrent(r.ctx)
	return runtime.UnlockOSThread
}

// Alloc implements Driver; running out of device memory says how much was asked.
func (r *Real) Alloc(bytes int) (DevicePtr, error) {
	defer r.pin()()
	var p uint64
	if err := r.check(fmt.Sprintf("cuMemAlloc(%d bytes)", bytes), r.cuMemAlloc(&p, uintptr(max(bytes, 1)))); err != nil {
		return 0, err
	}
	return DevicePtr(p), nil
}

// Free implements Driver.
func (r *Real) Free(p DevicePtr) {
	defer r.pin()()
	r.cuMemFree(uint64(p))
}

// CopyHtoD implements Driver.
func (r *Real) CopyHtoD(dst DevicePtr, src unsafe.Pointer, bytes int) error {
	defer r.pin()()
	return r.check("cuMemcpyHtoD", r.cuMemcpyHtoD(uint64(dst), src, uintptr(bytes)))
}

// CopyDtoH implements Driver.
func (r *Real) CopyDtoH(dst unsafe.Pointer, src DevicePtr, bytes int) error {
	defer r.pin()()
	return r.check("cuMemcpyDtoH", r.cuMemcpyDtoH(dst, uint64(src), uintptr(bytes)))
}

func cublasOp(o Op) int32 {
	if o == Trans {
		return 1 // CUBLAS_OP_T
	}
	return 0 // CUBLAS_OP_N
}

// Sgemm implements Driver.
func (r *Real) Sgemm(ta, tb Op, m, n, k int, alpha float32, a DevicePtr, lda int, b DevicePtr, ldb int, beta float32, c DevicePtr, ldc int) error {
	defer r.pin()()
	if st := r.cublasSgemm(r.blas, cublasOp(ta), cublasOp(tb), int32(m), int32(n), int32(k), &alpha, uintptr(a), int32(lda), uintptr(b), int32(ldb), &beta, uintptr(c), int32(ldc)); st != 0 {
		return fmt.Errorf("cuda: cublasSgemm: status %d", st)
	}
	return nil
}

// Dgemm implements Driver.
func (r *Real) Dgemm(ta, tb Op, m, n, k int, alpha float64, a DevicePtr, lda int, b DevicePtr, ldb int, beta float64, c DevicePtr, ldc int) error {
	defer r.pin()()
	if st := r.cublasDgemm(r.blas, cublasOp(ta), cublasOp(tb), int32(m), int32(n), int32(k), &alpha, uintptr(a), int32(lda), uintptr(b), int32(ldb), &beta, uintptr(c), int32(ldc)); st != 0 {
		return fmt.Errorf("cuda: cublasDgemm: status %d", st)
	}
	return nil
}

// GemmBF16 implements Driver with cublasGemmEx.
func (r *Real) GemmBF16(ta, tb Op, m, n, k int, alpha float32, a DevicePtr, lda int, b DevicePtr, ldb int, beta float32, c DevicePtr, ldc int) error {
	defer r.pin()()
	if st := r.cublasGemmEx(r.blas, cublasOp(ta), cublasOp(tb), int32(m), int32(n), int32(k), &alpha, uintptr(a), cudaR16BF, int32(lda),
		uintptr(b), cudaR16BF, int32(ldb), &beta, uintptr(c), cudaR32F, int32(ldc), cublasCompute32F, cublasGemmDflt); st != 0 {
		return fmt.Errorf("cuda: cublasGemmEx (bf16): status %d", st)
	}
	return nil
}

// ZgemmStridedBatched implements Driver with cublasZgemmStridedBatched.
func (r *Real) ZgemmStridedBatched(ta, tb Op, m, n, k int, alpha complex128, a DevicePtr, lda int, strideA int64, b DevicePtr, ldb int, strideB int64,
	beta complex128, c DevicePtr, ldc int, strideC int64, batch int) error {
	defer r.pin()()
	if st := r.cublasZgemmSB(r.blas, cublasOp(ta), cublasOp(tb), int32(m), int32(n), int32(k), &alpha, uintptr(a), int32(lda), strideA,
		uintptr(b), int32(ldb), strideB, &beta, uintptr(c), int32(ldc), strideC, int32(batch)); st != 0 {
		return fmt.Errorf("cuda: cublasZgemmStridedBatched: status %d", st)
	}
	return nil
}

// ZgetrfBatched implements Driver with cublasZgetrfBatched.
func (r *Real) ZgetrfBatched(n int, aptrs DevicePtr, lda int, piv, info DevicePtr, batch int) error {
	defer r.pin()()
	if st := r.cublasZgetrfBatched(r.blas, int32(n), uintptr(aptrs), int32(lda), uintptr(piv), uintptr(info), int32(batch)); st != 0 {
		return fmt.Errorf("cuda: cublasZgetrfBatched: status %d", st)
	}
	return nil
}

// ZgetriBatched implements Driver with cublasZgetriBatched.
func (r *Real) ZgetriBatched(n int, aptrs DevicePtr, lda int, piv, cptrs DevicePtr, ldc int, info DevicePtr, batch int) error {
	defer r.pin()()
	if st := r.cublasZgetriBatched(r.blas, int32(n), uintptr(aptrs), int32(lda), uintptr(piv), uintptr(cptrs), int32(ldc), uintptr(info), int32(batch)); st != 0 {
		return fmt.Errorf("cuda: cublasZgetriBatched: status %d", st)
	}
	return nil
}

// Synchronize implements Driver.
func (r *Real) Synchronize() error {
	defer r.pin()()
	return r.check("cuCtxSynchronize", r.cuCtxSynchronize())
}

// Close implements Driver: it destroys the cuBLAS handle (the primary
// context stays with the process, for the next OpenReal). Closing twice
// is harmless.
func (r *Real) Close() error {
	if r.blas == 0 {
		return nil
	}
	defer r.pin()()
	st := r.cublasDestroy(r.blas)
	r.blas = 0
	if st != 0 {
		return fmt.Errorf("cuda: cublasDestroy: status %d", st)
	}
	return nil
}

// Compile implements Driver: NVRTC compiles source to a cubin for this
// device's architecture, loaded with cuModuleLoadData. Cubins are cached
// on disk (as the emulator's libraries) by the hash of the source, the
// architecture and NVRTC's version. A compile error carries NVRTC's
// program log.
func (r *Real) Compile(name, source string) (Module, error) {
	dir, err := cacheDir("nvrtc")
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%s", source, strings.Join(r.CompileOptions(), " "), r.nvrtcVer)))
	path := filepath.Join(dir, hex.EncodeToString(sum[:16])+".cubin")
	bin, err := os.ReadFile(path)
	if err != nil {
		if bin, err = r.nvrtc(name, source); err != nil {
			return nil, err
		}
		tmp := path + fmt.Sprintf(".%d.tmp", os.Getpid())
		if os.WriteFile(tmp, bin, 0o644) == nil {
			os.Rename(tmp, path) // a failed cache write costs a recompilation, nothing else
		}
	}
	var mod uintptr
	unpin := r.pin()
	err = r.check("cuModuleLoadData("+name+")", r.cuModuleLoadData(&mod, unsafe.Pointer(&bin[0])))
	unpin()
	if err != nil {
		return nil, err
	}
	return &realModule{r: r, name: name, mod: mod}, nil
}

// CompileOptions returns the options NVRTC compiles with: this device's
// architecture, C++17, and no contraction of a multiply and an add into a
// fused multiply-add (--fmad=false, NVRTC's default is true), so that the
// device rounds every operation as the emulator's g++ and Go's CPU code do
// and the float64 parity with the CPU flow holds to rounding of the same
// operations.
func (r *Real) CompileOptions() []string {
	return []string{fmt.Sprintf("--gpu-architecture=sm_%d%d", r.major, r.minor), "--std=c++17", "--fmad=false"}
}

// nvrtc compiles source to a cubin for this device.
func (r *Real) nvrtc(name, source string) ([]byte, error) {
	var prog uintptr
	if st := r.nvrtcCreateProgram(&prog, source, name, 0, nil, nil); st != 0 {
		return nil, fmt.Errorf("cuda: nvrtcCreateProgram(%s): status %d", name, st)
	}
	defer r.nvrtcDestroyProgram(&prog)
	opts := r.CompileOptions()
	cstrs := make([][]byte, len(opts))
	ptrs := make([]unsafe.Pointer, len(opts))
	for i, o := range opts {
		cstrs[i] = append([]byte(o), 0)
		ptrs[i] = unsafe.Pointer(&cstrs[i][0])
	}
	st := r.nvrtcCompileProgram(prog, int32(len(opts)), unsafe.Pointer(&ptrs[0]))
	runtime.KeepAlive(cstrs)
	if st != 0 {
		var n uintptr
		r.nvrtcGetLogSize(prog, &n)
		log := make([]byte, n+1)
		r.nvrtcGetLog(prog, unsafe.Pointer(&log[0]))
		return nil, &CompileError{Name: name, Log: strings.TrimRight(string(log), "\x00"), Err: fmt.Errorf("NVRTC status %d", st)}
	}
	var n uintptr
	if st := r.nvrtcGetCUBINSize(prog, &n); st != 0 || n == 0 {
		return nil, fmt.Errorf("cuda: nvrtcGetCUBINSize(%s): status %d", name, st)
	}
	bin := make([]byte, n)
	if st := r.nvrtcGetCUBIN(prog, unsafe.Pointer(&bin[0])); st != 0 {
		return nil, fmt.Errorf("cuda: nvrtcGetCUBIN(%s): status %d", name, st)
	}
	return bin, nil
}

type realModule struct {
	r    *Real
	name string
	mod  uintptr
}

func (m *realModule) Function(name string) (Function, error) {
	defer m.r.pin()()
	var f uintptr
	if err := m.r.check("cuModuleGetFunction("+m.name+", "+name+")", m.r.cuModuleGetFunc(&f, m.mod, name)); err != nil {
		return nil, err
	}
	return &realFunction{r: m.r, name: name, f: f}, nil
}

type realFunction struct {
	r    *Real
	name string
	f    uintptr
}

func (f *realFunction) launch(grid, block Dim3, params []unsafe.Pointer) error {
	defer f.r.pin()()
	var p unsafe.Pointer
	if len(params) > 0 {
		p = unsafe.Pointer(&params[0])
	}
	res := f.r.cuLaunchKernel(f.f, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, 0, 0, p, nil)
	runtime.KeepAlive(params)
	return f.r.check("cuLaunchKernel("+f.name+")", res)
}
