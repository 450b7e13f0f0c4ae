package h5

// #include <stdlib.h>
// #include "hdf5.h"
// static herr_t latestFormat(hid_t f) {
//     return H5Fset_libver_bounds(f, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
// }
// // createLatest creates (truncating) the empty file name in the latest
// // file format (superblock version 3) and closes it.
// static herr_t createLatest(const char *name) {
//     hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
//     if (fapl < 0) return -1;
//     hid_t f = -1;
//     if (H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST) >= 0)
//         f = H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
//     H5Pclose(fapl);
//     if (f < 0) return -1;
//     return H5Fclose(f);
// }
// // clearStatus opens the file name for writing with the status flags of
// // its superblock cleared (what `h5clear -s` does: the flags a writer
// // killed in SWMR mode leaves set, which make every later non-SWMR open
// // fail with "file is already open for write") and closes it.
// static herr_t clearStatus(const char *name) {
//     hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
//     if (fapl < 0) return -1;
//     hbool_t clear = 1;
//     herr_t rc = H5Pset(fapl, "clear_status_flags", &clear);
//     hid_t f = rc < 0 ? -1 : H5Fopen(name, H5F_ACC_RDWR, fapl);
//     H5Pclose(fapl);
//     if (f < 0) return -1;
//     return H5Fclose(f);
// }
import "C"

import (
	"fmt"
	"unsafe"

	"gonum.org/v1/hdf5"
)

// Single writer, multiple readers (HDF5's SWMR mode). A file whose writer
// calls StartSWMR can be read while it grows: by Open in other processes,
// and by h5py as h5py.File(path, "r", swmr=True). In this mode the writer
// may append to existing extendible datasets and overwrite existing
// attributes of the same type and shape, and create nothing; every Flush
// makes the rows appended so far visible to readers, and a writer killed
// afterwards leaves them readable. Such a file needs the latest file format
// (CreateLatest).

// swmrRead and swmrWrite are H5F_ACC_SWMR_READ and H5F_ACC_SWMR_WRITE.
const (
	swmrRead  = 0x0040
	swmrWrite = 0x0020
)

// CreateLatest creates (truncating) a file for writing, as Create does,
// in the latest HDF5 file format (superblock version 3, the dataset
// indices that SWMR needs), so that StartSWMR can switch it to SWMR
// writing. Such files need HDF5 1.10 or later to read (h5py built on it).
func CreateLatest(path string) (*File, error) {
	if err := func() error {
		defer enter()()
		cpath := C.CString(path)
		defer C.free(unsafe.Pointer(cpath))
		if C.createLatest(cpath) < 0 {
			return fmt.Errorf("create %s: failed", path)
		}
		return nil
	}(); err != nil {
		return nil, err
	}
	f, err := OpenRW(path)
	if err != nil {
		return nil, err
	}
	if err := f.latest(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// latest makes f create every new object in the latest format.
func (f *File) latest() error {
	defer enter()()
	if C.latestFormat(C.hid_t(f.f.ID())) < 0 {
		return fmt.Errorf("%s: cannot switch to the latest file format", f.path)
	}
	return nil
}

// StartSWMR switches f, open for writing and made by CreateLatest, to SWMR
// write mode: from now on readers in other processes may open it (see the
// package comment on SWMR). The HDF5 library drops its lock on the file.
func (f *File) StartSWMR() error {
	if err := f.latest(); err != nil {
		return err
	}
	defer enter()()
	if C.H5Fstart_swmr_write(C.hid_t(f.f.ID())) < 0 {
		return fmt.Errorf("%s: cannot start SWMR writing (a file of the old format, or objects still open)", f.path)
	}
	f.swmr = true
	return nil
}

// SWMR reports whether f is in SWMR write mode.
func (f *File) SWMR() bool { return f.swmr }

// ClearStatus clears the superblock flags that a writer killed in SWMR
// mode leaves set in the file at path (as `h5clear -s` does), so that it
// can be opened for writing again. Only for a file that no live process
// writes: the caller must know that its writer is gone.
func ClearStatus(path string) error {
	defer enter()()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	if C.clearStatus(cpath) < 0 {
		return fmt.Errorf("%s: cannot clear the status flags of the file", path)
	}
	return nil
}

// openRead opens path read-only, as a SWMR reader where HDF5 allows it
// (every file of the latest format, being written or not), else plainly.
func openRead(path string) (*hdf5.File, error) {
	f, err := hdf5.OpenFile(path, hdf5.F_ACC_RDONLY|swmrRead)
	if err == nil {
		return f, nil
	}
	return hdf5.OpenFile(path, hdf5.F_ACC_RDONLY)
}
