package h5

import (
	"fmt"

	"gonum.org/v1/hdf5"
)

// attrHolder is what carries attributes: groups and datasets.
type attrHolder interface {
	OpenAttribute(name string) (*hdf5.Attribute, error)
}

// holder opens the group or dataset at path; close must be called.
func (f *File) holder(path string) (attrHolder, func(), error) {
	if path == "" {
		path = "/"
	}
	if path != "/" {
		if ds, err := f.f.OpenDataset(path); err == nil {
			return ds, func() { ds.Close() }, nil
		}
	}
	g, err := f.f.OpenGroup(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: object %s: %w", f.path, path, err)
	}
	return g, func() { g.Close() }, nil
}

// ReadAttr reads the numeric attribute name of the object at path ("/" for
// the root). Scalars and one-dimensional attributes are both returned as a
// slice.
func ReadAttr[T Number](f *File, path, name string) ([]T, error) {
	defer enter()()
	h, done, err := f.holder(path)
	if err != nil {
		return nil, err
	}
	defer done()
	a, err := h.OpenAttribute(name)
	if err != nil {
		return nil, fmt.Errorf("%s: attribute %s of %s: %w", f.path, name, path, err)
	}
	defer a.Close()
	sp := a.Space()
	defer sp.Close()
	n := sp.SimpleExtentNPoints()
	out := make([]T, n)
	if n == 0 {
		return out, nil
	}
	dt := memType[T]()
	defer dt.Close()
	if err := a.Read(&out[0], dt); err != nil {
		return nil, fmt.Errorf("%s: read attribute %s of %s: %w", f.path, name, path, err)
	}
	return out, nil
}

// ReadScalarAttr reads a scalar numeric attribute.
func ReadScalarAttr[T Number](f *File, path, name string) (T, error) {
	defer enter()()
	v, err := ReadAttr[T](f, path, name)
	if err != nil {
		return 0, err
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("%s: attribute %s of %s has %d values, want 1", f.path, name, path, len(v))
	}
	return v[0], nil
}
