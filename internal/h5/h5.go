// Package h5 is the project's thin layer over gonum.org/v1/hdf5: reading and
// writing whole numeric datasets with their shapes, and scalar attributes.
//
// Paths are HDF5 paths ("/model/layers/00/conv0/weight"); intermediate groups
// are created on write. Numeric data are converted by HDF5 to the element
// type of the Go slice, so a float32 dataset reads into []float64 exactly.
// Every function returns errors that name the file and the object.
package h5

import (
	"fmt"
	"strings"

	"gonum.org/v1/hdf5"
)

// File is an open HDF5 file.
type File struct {
	f    *hdf5.File
	path string
	swmr bool // in SWMR write mode (StartSWMR)
}

// Open opens an existing file read-only; a file that a writer in SWMR mode
// is growing (StartSWMR) opens too, and reads as of its writer's last
// Flush.
func Open(path string) (*File, error) {
	defer enter()()
	if !hdf5.IsHDF5(path) {
		return nil, fmt.Errorf("open %s: not an HDF5 file (or missing)", path)
	}
	f, err := openRead(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &File{f: f, path: path}, nil
}

// Create creates (truncating) a file for writing.
func Create(path string) (*File, error) {
	defer enter()()
	f, err := hdf5.CreateFile(path, hdf5.F_ACC_TRUNC)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return &File{f: f, path: path}, nil
}

// Path returns the file name the File was opened with.
func (f *File) Path() string { return f.path }

// Raw returns the underlying gonum hdf5 file, for operations this package
// does not wrap.
func (f *File) Raw() *hdf5.File { return f.f }

// Close closes the file.
func (f *File) Close() error {
	defer enter()()
	if err := f.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.path, err)
	}
	return nil
}

// Flush asks HDF5 to write its buffers to the file.
func (f *File) Flush() error {
	defer enter()()
	if err := f.f.Flush(hdf5.F_SCOPE_GLOBAL); err != nil {
		return fmt.Errorf("flush %s: %w", f.path, err)
	}
	return nil
}

// Exists reports whether the object at path (group or dataset) exists. Every
// intermediate group is checked, so a missing parent is not an error.
func (f *File) Exists(path string) bool {
	defer enter()()
	parts := strings.Split(strings.Trim(path, "/"), "/")
	cur := ""
	for _, p := range parts {
		cur += "/" + p
		if !f.f.LinkExists(cur) {
			return false
		}
	}
	return true
}

// Shape returns the dimensions of the dataset at path.
func (f *File) Shape(path string) ([]int, error) {
	defer enter()()
	ds, err := f.f.OpenDataset(path)
	if err != nil {
		return nil, fmt.Errorf("%s: dataset %s: %w", f.path, path, err)
	}
	defer ds.Close()
	return f.dims(ds, path)
}

func (f *File) dims(ds *hdf5.Dataset, path string) ([]int, error) {
	sp := ds.Space()
	defer sp.Close()
	if sp.SimpleExtentNDims() == 0 { // scalar dataset
		return []int{}, nil
	}
	d, _, err := sp.SimpleExtentDims()
	if err != nil {
		return nil, fmt.Errorf("%s: dataset %s: shape: %w", f.path, path, err)
	}
	shape := make([]int, len(d))
	for i, v := range d {
		shape[i] = int(v)
	}
	return shape, nil
}

// Number is the set of element types that the numeric readers and writers
// accept.
type Number interface {
	~float32 | ~float64 | ~int32 | ~int64 | ~uint8
}

// maxElements bounds the size of a dataset that Read accepts, so that a
// corrupt shape gives an error instead of a failed allocation.
const maxElements = 1 << 34

// Read reads the whole numeric dataset at path, converting to T, and returns
// the data in row-major order with the shape.
func Read[T Number](f *File, path string) ([]T, []int, error) {
	defer enter()()
	ds, err := f.f.OpenDataset(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: dataset %s: %w", f.path, path, err)
	}
	defer ds.Close()
	shape, err := f.dims(ds, path)
	if err != nil {
		return nil, nil, err
	}
	n := 1
	for _, v := range shape {
		if v < 0 || (v > 0 && n > maxElements/v) {
			return nil, nil, fmt.Errorf("%s: dataset %s: implausible shape %v (corrupt file?)", f.path, path, shape)
		}
		n *= v
	}
	data := make([]T, n)
	if n > 0 {
		if err := readInto(ds, data, nil, nil); err != nil {
			return nil, nil, fmt.Errorf("%s: read %s: %w", f.path, path, err)
		}
	}
	return data, shape, nil
}

// Write creates the dataset at path with the given shape (row-major data) and
// writes data, creating missing parent groups. len(data) must equal the
// product of shape.
func Write[T Number](f *File, path string, data []T, shape []int) error {
	defer enter()()
	n := 1
	dims := make([]uint, len(shape))
	for i, v := range shape {
		n *= v
		dims[i] = uint(v)
	}
	if n != len(data) {
		panic(fmt.Sprintf("h5: Write %s: %d elements for shape %v", path, len(data), shape))
	}
	if err := f.makeParents(path); err != nil {
		return err
	}
	sp, err := hdf5.CreateSimpleDataspace(dims, nil)
	if err != nil {
		return fmt.Errorf("%s: dataspace for %s: %w", f.path, path, err)
	}
	defer sp.Close()
	dt := memType[T]()
	defer dt.Close()
	ds, err := f.f.CreateDataset(path, dt, sp)
	if err != nil {
		return fmt.Errorf("%s: create %s: %w", f.path, path, err)
	}
	defer ds.Close()
	if n > 0 {
		if err := writeFrom(ds, data, nil, nil); err != nil {
			return fmt.Errorf("%s: write %s: %w", f.path, path, err)
		}
	}
	return nil
}

// makeParents creates every missing group above path.
func (f *File) makeParents(path string) error {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	cur := ""
	for _, p := range parts[:len(parts)-1] {
		cur += "/" + p
		if f.f.LinkExists(cur) {
			continue
		}
		g, err := f.f.CreateGroup(cur)
		if err != nil {
			return fmt.Errorf("%s: create group %s: %w", f.path, cur, err)
		}
		g.Close()
	}
	return nil
}
