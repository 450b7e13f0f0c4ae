// Package cuda is the boundary between the CUDA backend and the device:
// the few entry points of the CUDA driver, NVRTC and cuBLAS
// that the backend needs, behind one interface with two implementations.
//
//   - The real one loads libcuda.so.1, NVRTC and cuBLAS at run time with
//     purego (no CUDA headers or toolkit at build time, no cgo for CUDA;
//     gorgonia.org/cu of the design card needs cuda.h and calls entry
//     points CUDA 13 changed). Kernels are CUDA C source compiled by NVRTC
//     for the device's compute capability.
//   - The emulator compiles the same source with the system C++ compiler
//     and a prelude (emulator.h: threadIdx, blockIdx, blockDim, gridDim,
//     __shared__, __syncthreads as a barrier among a block's threads,
//     atomicAdd) and runs every block's threads on the CPU; device memory
//     is host memory, and cuBLAS's column-major products are OpenBLAS's.
//     NFSCHWINGER_CUDA=emulate selects it. It is slow and exists so that
//     everything above this boundary — memory, launches, argument
//     marshalling, GEMM layouts — runs in CI without a GPU.
//
// Kernels are declared extern "C" __global__ with parameters of the types
// Launch marshals (device pointers, int32, uint32, int64, float32,
// float64), one parameter per comma; the emulator parses these signatures.
package cuda

import (
	"errors"
	"fmt"
	"os"
	"unsafe"
)

// DevicePtr is an address in the device's memory (CUdeviceptr).
type DevicePtr uintptr

// Dim3 is a grid or block shape, as CUDA's dim3; zero components count as 1.
type Dim3 struct{ X, Y, Z uint32 }

func (d Dim3) norm() Dim3 {
	for _, p := range []*uint32{&d.X, &d.Y, &d.Z} {
		if *p == 0 {
			*p = 1
		}
	}
	return d
}

// Op selects op(X) of a GEMM: X or its transpose.
type Op int

const (
	NoTrans Op = iota // op(X) = X
	Trans             // op(X) = Xᵀ
)

// Driver is one device: memory, modules compiled from CUDA C source, and
// the products of cuBLAS. Matrices of Sgemm and Dgemm follow cuBLAS:
// column-major, C (m×n) = alpha·op(A)·op(B) + beta·C with op(A) m×k, op(B)
// k×n and leading dimensions lda, ldb, ldc (the column strides). Calls are
// ordered (one stream); Synchronize waits for them. Not safe for
// concurrent use.
type Driver interface {
	// Name describes the device, e.g. "NVIDIA H200 (sm_90)" or "emulator".
	Name() string
	// Alloc returns bytes of device memory (uninitialized).
	Alloc(bytes int) (DevicePtr, error)
	// Free releases memory from Alloc.
	Free(p DevicePtr)
	// CopyHtoD copies bytes from host memory src to the device.
	CopyHtoD(dst DevicePtr, src unsafe.Pointer, bytes int) error
	// CopyDtoH copies bytes from the device to host memory dst.
	CopyDtoH(dst unsafe.Pointer, src DevicePtr, bytes int) error
	// Compile compiles CUDA C source (name labels it in errors and caches).
	Compile(name, source string) (Module, error)
	// Sgemm and Dgemm are cuBLAS's float32 and float64 products.
	Sgemm(ta, tb Op, m, n, k int, alpha float32, a DevicePtr, lda int, b DevicePtr, ldb int, beta float32, c DevicePtr, ldc int) error
	Dgemm(ta, tb Op, m, n, k int, alpha float64, a DevicePtr, lda int, b DevicePtr, ldb int, beta float64, c DevicePtr, ldc int) error
	// GemmBF16 is cublasGemmEx with A and B in bfloat16 (the upper 16
	// bits of a float32, stored as uint16), C in float32 and float32
	// accumulation (CUBLAS_COMPUTE_32F): conv_precision = "bf16".
	GemmBF16(ta, tb Op, m, n, k int, alpha float32, a DevicePtr, lda int, b DevicePtr, ldb int, beta float32, c DevicePtr, ldc int) error
	// ZgemmStridedBatched is cuBLAS's batched complex128 product of
	// matrices at fixed distances: C_i = alpha·op(A_i)·op(B_i) + beta·C_i
	// for i < batch, A_i at a + i·strideA elements (16 bytes each; B_i,
	// C_i alike), column-major as Dgemm (the blocked LU's trailing
	// updates).
	ZgemmStridedBatched(ta, tb Op, m, n, k int, alpha complex128, a DevicePtr, lda int, strideA int64, b DevicePtr, ldb int, strideB int64,
		beta complex128, c DevicePtr, ldc int, strideC int64, batch int) error
	// ZgetrfBatched is cuBLAS's batched LU with partial pivoting of batch
	// complex128 matrices (column-major, interleaved real and imaginary
	// parts) of order n and leading dimension lda, in place: aptrs is a
	// device array of batch device pointers to them, piv receives the
	// pivots (int32, 1-based as LAPACK's, n per matrix) and info one
	// int32 per matrix (0, or k > 0 when U(k, k) is exactly zero).
	ZgetrfBatched(n int, aptrs DevicePtr, lda int, piv, info DevicePtr, batch int) error
	// ZgetriBatched is cuBLAS's batched inverse from ZgetrfBatched's
	// factors and pivots: the inverse of the matrix at aptrs[b] into the
	// one at cptrs[b] (leading dimension ldc; out of place), info as
	// ZgetrfBatched's.
	ZgetriBatched(n int, aptrs DevicePtr, lda int, piv, cptrs DevicePtr, ldc int, info DevicePtr, batch int) error
	// Synchronize waits for every call so far and returns the first error
	// of an asynchronous one.
	Synchronize() error
	// Close releases the device.
	Close() error
}

// Module is compiled device code.
type Module interface {
	// Function returns the kernel of that (extern "C") name.
	Function(name string) (Function, error)
}

// Function is one kernel; launch it with Launch.
type Function interface {
	// launch runs the kernel on grid × block threads with the kernel
	// parameters params (cuLaunchKernel's kernelParams: one pointer per
	// parameter, to its value).
	launch(grid, block Dim3, params []unsafe.Pointer) error
}

// ErrNoDevice says that no CUDA driver or no device is available.
var ErrNoDevice = errors.New("no CUDA device")

// EnvMode is the environment variable that selects the implementation:
// "emulate" for the emulator, anything else (or unset) for the real driver.
const EnvMode = "NFSCHWINGER_CUDA"

// Open returns the device the environment selects (EnvMode): the emulator,
// or the real driver's device ordinal device (ErrNoDevice when there is no
// driver or no such device).
func Open(device int) (Driver, error) {
	if os.Getenv(EnvMode) == "emulate" {
		return NewEmulator()
	}
	return OpenReal(device)
}

// Visible returns the number of devices Open can open: 1 for the
// emulator (EnvMode), else DeviceCount's; an error wrapping ErrNoDevice
// when there is none.
func Visible() (int, error) {
	if os.Getenv(EnvMode) == "emulate" {
		return 1, nil
	}
	n, err := DeviceCount()
	if err == nil && n == 0 {
		err = fmt.Errorf("cuda: %w: the driver sees none", ErrNoDevice)
	}
	return n, err
}

// DeviceFor returns the device a rank uses: its node-local rank
// (comm.Comm.LocalRank) modulo the number of visible devices. The driver
// numbers the devices of CUDA_VISIBLE_DEVICES 0, 1, …, so with Slurm's
// --gpus-per-task=1 every rank sees one device and takes device 0, and
// with all of a node's k devices visible, ranks 0 … k−1 of the node take
// one each.
func DeviceFor(localRank, visible int) int {
	if visible < 1 || localRank < 0 {
		panic(fmt.Sprintf("cuda: DeviceFor(%d, %d)", localRank, visible))
	}
	return localRank % visible
}

// Upload copies x into new device memory of d.
func Upload[T any](d Driver, x []T) (DevicePtr, error) {
	n := len(x) * int(unsafe.Sizeof(*new(T)))
	p, err := d.Alloc(n)
	if err != nil {
		return 0, err
	}
	if err := CopyIn(d, p, x); err != nil {
		d.Free(p)
		return 0, err
	}
	return p, nil
}

// CopyIn copies x into the device memory at p (which holds at least
// len(x) elements).
func CopyIn[T any](d Driver, p DevicePtr, x []T) error {
	if len(x) == 0 {
		return nil
	}
	return d.CopyHtoD(p, unsafe.Pointer(&x[0]), len(x)*int(unsafe.Sizeof(x[0])))
}

// Download waits for the device (Synchronize) and copies len(x) elements
// from p into x.
func Download[T any](d Driver, x []T, p DevicePtr) error {
	if err := d.Synchronize(); err != nil {
		return err
	}
	if len(x) == 0 {
		return nil
	}
	return d.CopyDtoH(unsafe.Pointer(&x[0]), p, len(x)*int(unsafe.Sizeof(x[0])))
}

// Launch runs kernel f on grid × block threads with the arguments args,
// each a DevicePtr, int32, uint32, int64, float32 or float64 in the order
// of the kernel's parameters (an int is refused: its width is ambiguous).
// The same marshalling serves both implementations: every argument is
// copied into an 8-byte slot and params points at the slots.
func Launch(f Function, grid, block Dim3, args ...any) error {
	slots := make([]uint64, len(args))
	params := make([]unsafe.Pointer, len(args))
	for i, a := range args {
		p := unsafe.Pointer(&slots[i])
		switch v := a.(type) {
		case DevicePtr:
			*(*uintptr)(p) = uintptr(v)
		case int32:
			*(*int32)(p) = v
		case uint32:
			*(*uint32)(p) = v
		case int64:
			*(*int64)(p) = v
		case float32:
			*(*float32)(p) = v
		case float64:
			*(*float64)(p) = v
		default:
			return fmt.Errorf("cuda: kernel argument %d has type %T; want DevicePtr, int32, uint32, int64, float32 or float64", i, a)
		}
		params[i] = p
	}
	return f.launch(grid.norm(), block.norm(), params)
}
