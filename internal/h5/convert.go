package h5

// #cgo LDFLAGS: -lhdf5
// #include "hdf5.h"
// static void quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
// static herr_t readConverted(hid_t ds, hid_t mem, hid_t memspace, hid_t filespace, void *buf) {
//     return H5Dread(ds, mem, memspace, filespace, H5P_DEFAULT, buf);
// }
// static herr_t writeConverted(hid_t ds, hid_t mem, hid_t memspace, hid_t filespace, const void *buf) {
//     return H5Dwrite(ds, mem, memspace, filespace, H5P_DEFAULT, buf);
// }
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"

	"gonum.org/v1/hdf5"
)

// enter prepares a call into HDF5 and returns the function that ends it.
// HDF5 prints its error stack to stderr by default, and Debian's library is
// built thread-safe, which makes that setting per OS thread: every exported
// function of this package pins its goroutine to its thread and silences
// the printing there, so failures reach the caller only as errors.
func enter() func() {
	runtime.LockOSThread()
	C.quiet()
	return runtime.UnlockOSThread
}

// memType returns HDF5's native type for T; the caller closes it.
func memType[T Number]() *hdf5.Datatype {
	var zero T
	dt, err := hdf5.NewDatatypeFromValue(zero)
	if err != nil {
		panic(fmt.Sprintf("h5: no HDF5 type for %T: %v", zero, err))
	}
	return dt
}

// space returns the id of a dataspace, or H5S_ALL for nil.
func space(s *hdf5.Dataspace) C.hid_t {
	if s == nil {
		return C.H5S_ALL
	}
	return C.hid_t(s.ID())
}

// readInto reads the selection filespace of ds (nil: all) into buf, which
// memspace (nil: all) describes, converting the file's type to T.
func readInto[T Number](ds *hdf5.Dataset, buf []T, memspace, filespace *hdf5.Dataspace) error {
	if len(buf) == 0 {
		return nil
	}
	mt := memType[T]()
	defer mt.Close()
	if rc := C.readConverted(C.hid_t(ds.ID()), C.hid_t(mt.ID()), space(memspace), space(filespace), unsafe.Pointer(&buf[0])); rc < 0 {
		return fmt.Errorf("H5Dread failed")
	}
	return nil
}

// writeFrom writes buf (described by memspace, nil: all) to the selection
// filespace of ds (nil: all), converting T to the dataset's type.
func writeFrom[T Number](ds *hdf5.Dataset, buf []T, memspace, filespace *hdf5.Dataspace) error {
	if len(buf) == 0 {
		return nil
	}
	mt := memType[T]()
	defer mt.Close()
	if rc := C.writeConverted(C.hid_t(ds.ID()), C.hid_t(mt.ID()), space(memspace), space(filespace), unsafe.Pointer(&buf[0])); rc < 0 {
		return fmt.Errorf("H5Dwrite failed")
	}
	return nil
}
