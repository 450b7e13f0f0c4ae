package h5

// #include <stdlib.h>
// #include <string.h>
// #include "hdf5.h"
//
// // replaceAttr returns the attribute name of obj for writing, with file
// // type ftype and dataspace space: the existing one when it has that type
// // and shape (so that it is overwritten in place, as a file in SWMR write
// // mode requires: no object may be created there), else a new one that
// // replaces it.
// static hid_t replaceAttr(hid_t obj, const char *name, hid_t ftype, hid_t space) {
//     htri_t ex = H5Aexists(obj, name);
//     if (ex < 0) return -1;
//     if (ex > 0) {
//         hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
//         if (a < 0) return -1;
//         hid_t t = H5Aget_type(a), s = H5Aget_space(a);
//         int same = t >= 0 && s >= 0 && H5Tequal(t, ftype) > 0 && H5Sextent_equal(s, space) > 0;
//         if (t >= 0) H5Tclose(t);
//         if (s >= 0) H5Sclose(s);
//         if (same) return a;
//         H5Aclose(a);
//         if (H5Adelete(obj, name) < 0) return -1;
//     }
//     return H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
// }
//
// // writeNumAttr writes n values (scalar dataspace when rank == 0) of
// // memory type mtype, stored with the same type.
// static herr_t writeNumAttr(hid_t obj, const char *name, hid_t mtype, int rank, hsize_t n, const void *buf) {
//     hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
//     if (space < 0) return -1;
//     hid_t a = replaceAttr(obj, name, mtype, space);
//     herr_t rc = -1;
//     if (a >= 0) { rc = n == 0 ? 0 : H5Awrite(a, mtype, buf); H5Aclose(a); }
//     H5Sclose(space);
//     return rc;
// }
//
// // vlenUTF8 returns a new variable-length, null-terminated UTF-8 string type.
// static hid_t vlenUTF8(void) {
//     hid_t t = H5Tcopy(H5T_C_S1);
//     if (t < 0) return -1;
//     if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0 ||
//         H5Tset_strpad(t, H5T_STR_NULLTERM) < 0) { H5Tclose(t); return -1; }
//     return t;
// }
//
// // writeStrAttr writes a scalar variable-length UTF-8 string attribute, the
// // type h5py writes for a Python str.
// static herr_t writeStrAttr(hid_t obj, const char *name, const char *val) {
//     hid_t t = vlenUTF8();
//     if (t < 0) return -1;
//     hid_t space = H5Screate(H5S_SCALAR);
//     hid_t a = replaceAttr(obj, name, t, space);
//     herr_t rc = -1;
//     if (a >= 0) { rc = H5Awrite(a, t, &val); H5Aclose(a); }
//     H5Sclose(space); H5Tclose(t);
//     return rc;
// }
//
// // readStrAttr reads a scalar string attribute, variable or fixed length,
// // into a malloc'ed C string (*out, freed by the caller with free).
// // Returns 0, -1 on an HDF5 error, -2 when the attribute is not a scalar
// // string.
// static int readStrAttr(hid_t obj, const char *name, char **out) {
//     *out = NULL;
//     hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
//     if (a < 0) return -1;
//     hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
//     int rc = -2;
//     if (ft >= 0 && sp >= 0 && H5Tget_class(ft) == H5T_STRING && H5Sget_simple_extent_npoints(sp) == 1) {
//         if (H5Tis_variable_str(ft) > 0) {
//             hid_t mt = vlenUTF8();
//             char *s = NULL;
//             rc = (mt >= 0 && H5Aread(a, mt, &s) >= 0) ? 0 : -1;
//             if (rc == 0) {
//                 size_t n = s ? strlen(s) : 0;
//                 *out = malloc(n + 1);
//                 if (n) memcpy(*out, s, n);
//                 (*out)[n] = 0;
//             }
//             if (s) H5free_memory(s);
//             if (mt >= 0) H5Tclose(mt);
//         } else {
//             size_t n = H5Tget_size(ft);
//             hid_t mt = H5Tcopy(ft);
//             *out = calloc(n + 1, 1);
//             rc = (mt >= 0 && H5Aread(a, mt, *out) >= 0) ? 0 : -1;
//             if (mt >= 0) H5Tclose(mt);
//         }
//     }
//     if (sp >= 0) H5Sclose(sp);
//     if (ft >= 0) H5Tclose(ft);
//     H5Aclose(a);
//     return rc;
// }
import "C"

import (
	"fmt"
	"strings"
	"unsafe"
)

// object opens the group or dataset at path ("/" or "" for the root) for
// attribute access and returns its id and the function that closes it. With
// create, a missing group at path (and its parents) is created first.
func (f *File) object(path string, create bool) (C.hid_t, func(), error) {
	if path == "" {
		path = "/"
	}
	if create && path != "/" && !f.Exists(path) {
		if err := f.makeParents(path); err != nil {
			return -1, nil, err
		}
		g, err := f.f.CreateGroup(path)
		if err != nil {
			return -1, nil, fmt.Errorf("%s: create group %s: %w", f.path, path, err)
		}
		g.Close()
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	id := C.H5Oopen(C.hid_t(f.f.ID()), cpath, C.H5P_DEFAULT)
	if id < 0 {
		return -1, nil, fmt.Errorf("%s: object %s: cannot open", f.path, path)
	}
	return id, func() { C.H5Oclose(id) }, nil
}

// WriteAttr writes the numeric attribute name of the object at path (a
// group or dataset; "/" for the root) as a one-dimensional attribute holding
// values, stored with T's type. A missing group at path is created; an
// existing attribute of that name is replaced.
func WriteAttr[T Number](f *File, path, name string, values []T) error {
	defer enter()()
	return writeNumAttr(f, path, name, values, 1)
}

// WriteScalarAttr writes a scalar numeric attribute (as h5py writes a
// Python int or float), replacing an existing one; see WriteAttr.
func WriteScalarAttr[T Number](f *File, path, name string, v T) error {
	defer enter()()
	return writeNumAttr(f, path, name, []T{v}, 0)
}

func writeNumAttr[T Number](f *File, path, name string, values []T, rank int) error {
	id, done, err := f.object(path, true)
	if err != nil {
		return err
	}
	defer done()
	mt := memType[T]()
	defer mt.Close()
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var buf unsafe.Pointer
	if len(values) > 0 {
		buf = unsafe.Pointer(&values[0])
	}
	if rc := C.writeNumAttr(id, cname, C.hid_t(mt.ID()), C.int(rank), C.hsize_t(len(values)), buf); rc < 0 {
		return fmt.Errorf("%s: write attribute %s of %s failed", f.path, name, path)
	}
	return nil
}

// WriteStringAttr writes a scalar string attribute (variable-length UTF-8,
// as h5py writes a Python str), replacing an existing one; see WriteAttr.
// value must not contain NUL bytes.
func WriteStringAttr(f *File, path, name, value string) error {
	defer enter()()
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("%s: attribute %s of %s: value contains a NUL byte", f.path, name, path)
	}
	id, done, err := f.object(path, true)
	if err != nil {
		return err
	}
	defer done()
	cname, cval := C.CString(name), C.CString(value)
	defer C.free(unsafe.Pointer(cname))
	defer C.free(unsafe.Pointer(cval))
	if rc := C.writeStrAttr(id, cname, cval); rc < 0 {
		return fmt.Errorf("%s: write attribute %s of %s failed", f.path, name, path)
	}
	return nil
}

// ReadStringAttr reads a scalar string attribute, variable-length or
// fixed-length (trailing NULs and padding spaces of fixed-length strings are
// kept as HDF5 returns them, up to the first NUL).
func ReadStringAttr(f *File, path, name string) (string, error) {
	defer enter()()
	id, done, err := f.object(path, false)
	if err != nil {
		return "", err
	}
	defer done()
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var out *C.char
	rc := C.readStrAttr(id, cname, &out)
	if out != nil {
		defer C.free(unsafe.Pointer(out))
	}
	switch rc {
	case 0:
		return C.GoString(out), nil
	case -2:
		return "", fmt.Errorf("%s: attribute %s of %s is not a scalar string", f.path, name, path)
	default:
		return "", fmt.Errorf("%s: attribute %s of %s: cannot read", f.path, name, path)
	}
}

// HasAttr reports whether the object at path has an attribute name; false
// when the object does not exist.
func HasAttr(f *File, path, name string) bool {
	defer enter()()
	id, done, err := f.object(path, false)
	if err != nil {
		return false
	}
	defer done()
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	return C.H5Aexists(id, cname) > 0
}
