package h5

// #include "hdf5.h"
// static herr_t setExtent(hid_t ds, int rank, const hsize_t *dims) {
//     (void)rank;
//     return H5Dset_extent(ds, dims);
// }
import "C"

import (
	"fmt"

	"gonum.org/v1/hdf5"
)

// Extendible datasets: the first axis (rows) is unlimited and grows by
// Append; the remaining axes (the row shape) are fixed. Storage is chunked
// with chunks of chunkRows rows, so appending never rewrites earlier rows and
// a file closed (or killed) after a Flush holds every row appended so far.
// Such datasets read like any other with Read, h5py or h5dump.

// unlimited is HDF5's H5S_UNLIMITED for a maximum dimension.
const unlimited = ^uint(0)

// OpenRW opens an existing HDF5 file for reading and writing (to append to
// its extendible datasets or add objects).
func OpenRW(path string) (*File, error) {
	defer enter()()
	if !hdf5.IsHDF5(path) {
		return nil, fmt.Errorf("open %s: not an HDF5 file (or missing)", path)
	}
	f, err := hdf5.OpenFile(path, hdf5.F_ACC_RDWR)
	if err != nil {
		return nil, fmt.Errorf("open %s for writing: %w", path, err)
	}
	return &File{f: f, path: path}, nil
}

// CreateExtendible creates at path an empty dataset of element type T with
// shape (0, rowShape...), extendible along the first axis, chunked by
// chunkRows rows. Missing parent groups are created. rowShape may be empty
// (a one-dimensional dataset of scalars). chunkRows must be positive and
// every entry of rowShape non-negative; otherwise CreateExtendible panics.
func CreateExtendible[T Number](f *File, path string, rowShape []int, chunkRows int) error {
	defer enter()()
	if chunkRows < 1 {
		panic(fmt.Sprintf("h5: CreateExtendible %s: chunkRows = %d", path, chunkRows))
	}
	rank := 1 + len(rowShape)
	dims := make([]uint, rank)
	maxDims := make([]uint, rank)
	chunk := make([]uint, rank)
	maxDims[0] = unlimited
	chunk[0] = uint(chunkRows)
	for i, v := range rowShape {
		if v < 0 {
			panic(fmt.Sprintf("h5: CreateExtendible %s: row shape %v", path, rowShape))
		}
		dims[i+1] = uint(v)
		maxDims[i+1] = uint(v)
		chunk[i+1] = uint(max(v, 1))
	}
	if err := f.makeParents(path); err != nil {
		return err
	}
	sp, err := hdf5.CreateSimpleDataspace(dims, maxDims)
	if err != nil {
		return fmt.Errorf("%s: dataspace for %s: %w", f.path, path, err)
	}
	defer sp.Close()
	dcpl, err := hdf5.NewPropList(hdf5.P_DATASET_CREATE)
	if err != nil {
		return fmt.Errorf("%s: property list for %s: %w", f.path, path, err)
	}
	defer dcpl.Close()
	if err := dcpl.SetChunk(chunk); err != nil {
		return fmt.Errorf("%s: chunks of %s: %w", f.path, path, err)
	}
	dt := memType[T]()
	defer dt.Close()
	ds, err := f.f.CreateDatasetWith(path, dt, sp, dcpl)
	if err != nil {
		return fmt.Errorf("%s: create %s: %w", f.path, path, err)
	}
	return ds.Close()
}

// Append appends rows to the extendible dataset at path: len(rows) must be a
// multiple of the row size (the product of the row shape), else Append
// panics. The values are converted to the dataset's element type. Appending
// to a dataset that was not created extendible is an error.
func Append[T Number](f *File, path string, rows []T) error {
	defer enter()()
	ds, err := f.f.OpenDataset(path)
	if err != nil {
		return fmt.Errorf("%s: dataset %s: %w", f.path, path, err)
	}
	defer ds.Close()
	shape, err := f.rowDims(ds, path)
	if err != nil {
		return err
	}
	rowSize := 1
	for _, v := range shape[1:] {
		rowSize *= v
	}
	if rowSize == 0 {
		if len(rows) != 0 {
			panic(fmt.Sprintf("h5: Append %s: %d values for empty rows", path, len(rows)))
		}
		return nil
	}
	if len(rows)%rowSize != 0 {
		panic(fmt.Sprintf("h5: Append %s: %d values is not a whole number of rows of %d", path, len(rows), rowSize))
	}
	n := len(rows) / rowSize
	if n == 0 {
		return nil
	}
	old := shape[0]
	newShape := append([]int{old + n}, shape[1:]...)
	if err := setExtent(ds, newShape); err != nil {
		return fmt.Errorf("%s: extend %s to %v rows: %w", f.path, path, old+n, err)
	}
	offset := make([]uint, len(shape))
	count := make([]uint, len(shape))
	offset[0] = uint(old)
	count[0] = uint(n)
	for i, v := range shape[1:] {
		count[i+1] = uint(v)
	}
	if err := writeRows(ds, rows, offset, count); err != nil {
		return fmt.Errorf("%s: append to %s: %w", f.path, path, err)
	}
	return nil
}

// Truncate shrinks the extendible dataset at path to its first rows rows. A
// dataset with at most rows rows is left as it is. rows must be
// non-negative.
func Truncate(f *File, path string, rows int) error {
	defer enter()()
	if rows < 0 {
		panic(fmt.Sprintf("h5: Truncate %s to %d rows", path, rows))
	}
	ds, err := f.f.OpenDataset(path)
	if err != nil {
		return fmt.Errorf("%s: dataset %s: %w", f.path, path, err)
	}
	defer ds.Close()
	shape, err := f.rowDims(ds, path)
	if err != nil {
		return err
	}
	if shape[0] <= rows {
		return nil
	}
	shape[0] = rows
	if err := setExtent(ds, shape); err != nil {
		return fmt.Errorf("%s: truncate %s to %d rows: %w", f.path, path, rows, err)
	}
	return nil
}

// Rows returns the length of the first axis of the dataset at path (the
// number of rows appended so far for an extendible dataset).
func Rows(f *File, path string) (int, error) {
	defer enter()()
	ds, err := f.f.OpenDataset(path)
	if err != nil {
		return 0, fmt.Errorf("%s: dataset %s: %w", f.path, path, err)
	}
	defer ds.Close()
	shape, err := f.rowDims(ds, path)
	if err != nil {
		return 0, err
	}
	return shape[0], nil
}

// ReadRows reads rows [start, start+n) of the dataset at path, converting to
// T, and returns them in row-major order with their shape (n, rowShape...).
// The dataset need not be extendible. A range outside the dataset is an
// error.
func ReadRows[T Number](f *File, path string, start, n int) ([]T, []int, error) {
	defer enter()()
	ds, err := f.f.OpenDataset(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: dataset %s: %w", f.path, path, err)
	}
	defer ds.Close()
	shape, err := f.rowDims(ds, path)
	if err != nil {
		return nil, nil, err
	}
	if start < 0 || n < 0 || start+n > shape[0] {
		return nil, nil, fmt.Errorf("%s: rows [%d, %d) of %s: dataset has %d rows", f.path, start, start+n, path, shape[0])
	}
	out := append([]int{n}, shape[1:]...)
	size := 1
	for _, v := range out {
		size *= v
	}
	data := make([]T, size)
	if size == 0 {
		return data, out, nil
	}
	offset := make([]uint, len(shape))
	count := make([]uint, len(shape))
	offset[0] = uint(start)
	for i, v := range out {
		count[i] = uint(v)
	}
	fs := ds.Space()
	if fs == nil {
		return nil, nil, fmt.Errorf("%s: dataspace of %s", f.path, path)
	}
	defer fs.Close()
	if err := fs.SelectHyperslab(offset, nil, count, nil); err != nil {
		return nil, nil, fmt.Errorf("%s: select rows of %s: %w", f.path, path, err)
	}
	ms, err := hdf5.CreateSimpleDataspace(count, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: memory dataspace for %s: %w", f.path, path, err)
	}
	defer ms.Close()
	if err := readInto(ds, data, ms, fs); err != nil {
		return nil, nil, fmt.Errorf("%s: read rows of %s: %w", f.path, path, err)
	}
	return data, out, nil
}

// rowDims returns the shape of ds, refusing scalar (rank-0) datasets, which
// have no rows (and which dims cannot describe).
func (f *File) rowDims(ds *hdf5.Dataset, path string) ([]int, error) {
	sp := ds.Space()
	if sp == nil {
		return nil, fmt.Errorf("%s: dataset %s: no dataspace", f.path, path)
	}
	rank := sp.SimpleExtentNDims()
	sp.Close()
	if rank < 1 {
		return nil, fmt.Errorf("%s: dataset %s is a scalar, it has no rows", f.path, path)
	}
	return f.dims(ds, path)
}

// setExtent changes the dimensions of a chunked dataset.
func setExtent(ds *hdf5.Dataset, shape []int) error {
	dims := make([]C.hsize_t, len(shape))
	for i, v := range shape {
		dims[i] = C.hsize_t(v)
	}
	if rc := C.setExtent(C.hid_t(ds.ID()), C.int(len(dims)), &dims[0]); rc < 0 {
		return fmt.Errorf("H5Dset_extent failed (is the dataset extendible?)")
	}
	return nil
}

// writeRows writes data into the hyperslab (offset, count) of ds; the
// dataspace is taken after any change of extent.
func writeRows[T Number](ds *hdf5.Dataset, data []T, offset, count []uint) error {
	fs := ds.Space()
	if fs == nil {
		return fmt.Errorf("no dataspace")
	}
	defer fs.Close()
	if err := fs.SelectHyperslab(offset, nil, count, nil); err != nil {
		return fmt.Errorf("select hyperslab: %w", err)
	}
	ms, err := hdf5.CreateSimpleDataspace(count, nil)
	if err != nil {
		return fmt.Errorf("memory dataspace: %w", err)
	}
	defer ms.Close()
	return writeFrom(ds, data, ms, fs)
}
