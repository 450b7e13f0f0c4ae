package nfio

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"

	"nfschwinger/internal/h5"
	"nfschwinger/nf"
)

// ModelGroup is the group of a checkpoint that holds the model: the
// architecture as attributes, the weights as datasets below it.
const ModelGroup = "/model"

// Names of the architecture attributes of a model group: the same as the
// root attributes of the reference vectors (shared/vectors/flow_L8.h5).
const (
	attrL         = "L"                // int64: lattice extent
	attrNLayers   = "n_layers"         // int64: coupling layers
	attrNKnots    = "n_knots"          // int64: spline knots
	attrHidden    = "hidden_channels"  // int64 array: hidden channels of the conditioner
	attrKernel    = "kernel_size"      // int64: convolution kernel size
	attrDilation  = "dilation"         // int64 array: dilation of each convolution
	attrMasking   = "masking"          // string: conditioner input, "2x1"
	attrSlope     = "leaky_relu_slope" // float64: LeakyReLU negative slope
	attrModelDesc = "description"      // string: what the group holds
)

// modelDescription is stored with every model so that a reader of the file
// (h5dump, h5py) knows the layout without this documentation.
const modelDescription = "gauge-equivariant normalizing flow (nfschwinger): " +
	"layers/KK/convJ/weight (C_out, C_in, kernel_size, kernel_size) and layers/KK/convJ/bias (C_out), " +
	"PyTorch Conv2d layout, circular padding dilation*(kernel_size-1)/2; architecture in the attributes"

// tensorPath returns the dataset path of tensor name below group.
func tensorPath(group, name string) string {
	return strings.TrimSuffix(group, "/") + "/" + name
}

// WriteModel writes the model into /model of f: the attributes L, n_layers,
// n_knots, hidden_channels, kernel_size, dilation, masking and
// leaky_relu_slope of arch (int64, float64 and a string, the types of the
// reference vectors) and every tensor of ps as the dataset
// /model/<tensor name> with its shape, stored in T's precision (for
// instance /model/layers/00/conv0/weight, shape (C_out, C_in, k, k)). The
// architecture is validated first; ps must be allocated.
func WriteModel[T nf.Float](f *h5.File, arch nf.Arch, ps *nf.ParamSet[T]) error {
	return writeModelAt(f, ModelGroup, arch, ps)
}

func writeModelAt[T nf.Float](f *h5.File, group string, arch nf.Arch, ps *nf.ParamSet[T]) error {
	if err := arch.Validate(); err != nil {
		return fmt.Errorf("write model to %s: %w", f.Path(), err)
	}
	if ps.Data == nil && ps.Len() > 0 {
		return fmt.Errorf("write model to %s: parameters not allocated", f.Path())
	}
	for _, t := range ps.Tensors {
		if err := h5.Write(f, tensorPath(group, t.Name), ps.Data[t.Offset:t.Offset+t.Size], t.Shape); err != nil {
			return fmt.Errorf("write model: %w", err)
		}
	}
	errs := []error{
		h5.WriteScalarAttr(f, group, attrL, int64(arch.L)),
		h5.WriteScalarAttr(f, group, attrNLayers, int64(arch.NLayers)),
		h5.WriteScalarAttr(f, group, attrNKnots, int64(arch.NKnots)),
		h5.WriteAttr(f, group, attrHidden, toInt64(arch.Hidden)),
		h5.WriteScalarAttr(f, group, attrKernel, int64(arch.KernelSize)),
		h5.WriteAttr(f, group, attrDilation, toInt64(arch.Dilation)),
		h5.WriteStringAttr(f, group, attrMasking, arch.Masking),
		h5.WriteScalarAttr(f, group, attrSlope, arch.LeakyReLUSlope),
		h5.WriteStringAttr(f, group, attrModelDesc, modelDescription),
	}
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("write model: %w", err)
		}
	}
	return nil
}

func toInt64(x []int) []int64 {
	y := make([]int64, len(x))
	for i, v := range x {
		y[i] = int64(v)
	}
	return y
}

// ReadArch reads the architecture attributes of group ("/model" in a
// checkpoint, "/" in the reference vectors) and validates it. Errors name the
// file, the group and the attribute.
func ReadArch(f *h5.File, group string) (nf.Arch, error) {
	var a nf.Arch
	wrap := func(err error) error {
		return fmt.Errorf("read model architecture from %s:%s: %w", f.Path(), group, err)
	}
	ints := []struct {
		name string
		dst  *int
	}{{attrL, &a.L}, {attrNLayers, &a.NLayers}, {attrNKnots, &a.NKnots}, {attrKernel, &a.KernelSize}}
	for _, v := range ints {
		x, err := h5.ReadScalarAttr[int64](f, group, v.name)
		if err != nil {
			return nf.Arch{}, wrap(err)
		}
		*v.dst = int(x)
	}
	lists := []struct {
		name string
		dst  *[]int
	}{{attrHidden, &a.Hidden}, {attrDilation, &a.Dilation}}
	for _, v := range lists {
		x, err := h5.ReadAttr[int64](f, group, v.name)
		if err != nil {
			return nf.Arch{}, wrap(err)
		}
		*v.dst = make([]int, len(x))
		for i, e := range x {
			(*v.dst)[i] = int(e)
		}
	}
	var err error
	if a.Masking, err = h5.ReadStringAttr(f, group, attrMasking); err != nil {
		return nf.Arch{}, wrap(err)
	}
	if a.LeakyReLUSlope, err = h5.ReadScalarAttr[float64](f, group, attrSlope); err != nil {
		return nf.Arch{}, wrap(err)
	}
	if err := a.Validate(); err != nil {
		return nf.Arch{}, wrap(err)
	}
	return a, nil
}

// ReadModelInto reads every tensor of ps from the datasets group/<tensor
// name> of f, stored as float32 or float64 (converted to T), into ps.Data.
// A missing tensor, a shape that differs from the declared one, or a
// non-finite value is an error naming the tensor; ps.Data may then be
// partly overwritten. ps must be allocated.
func ReadModelInto[T nf.Float](f *h5.File, group string, ps *nf.ParamSet[T]) error {
	if ps.Data == nil && ps.Len() > 0 {
		return fmt.Errorf("read model from %s: parameters not allocated", f.Path())
	}
	for _, t := range ps.Tensors {
		p := tensorPath(group, t.Name)
		if !f.Exists(p) {
			return fmt.Errorf("read model from %s: tensor %s missing (no dataset %s)", f.Path(), t.Name, p)
		}
		data, shape, err := h5.Read[T](f, p)
		if err != nil {
			return fmt.Errorf("read model: tensor %s: %w", t.Name, err)
		}
		if !slices.Equal(shape, t.Shape) {
			return fmt.Errorf("read model from %s: tensor %s has shape %v, the architecture needs %v", f.Path(), t.Name, shape, t.Shape)
		}
		for i, v := range data {
			if x := float64(v); math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Errorf("read model from %s: tensor %s: element %d is %v", f.Path(), t.Name, i, x)
			}
		}
		copy(ps.Data[t.Offset:t.Offset+t.Size], data)
	}
	return nil
}

// ErrNoModel reports a file that holds no complete model: an architecture
// attribute is missing, or the architecture is not valid.
var ErrNoModel = errors.New("holds no model")

// ErrNotHDF5 reports a file that the HDF5 library cannot open.
var ErrNotHDF5 = errors.New("not an HDF5 file")

// ModelFile is an open model file: a training checkpoint (the model in
// /model) or a bare weight file (the model at the root, the layout of
// shared/vectors/flow_L8.h5).
type ModelFile struct {
	f     *h5.File
	Group string  // "/model" or "/"
	Arch  nf.Arch // the architecture stored with the model
}

// archAttrs are the attributes of a model group that hold the
// architecture, in the order ReadArch reads them.
var archAttrs = []string{attrL, attrNLayers, attrNKnots, attrHidden, attrKernel, attrDilation, attrMasking, attrSlope}

// OpenModelFile opens the model file at path and reads its architecture.
// Errors: the file's own (os.ErrNotExist, …), ErrNotHDF5, or ErrNoModel
// naming the first missing attribute or the broken rule.
func OpenModelFile(path string) (*ModelFile, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	f, err := h5.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, ErrNotHDF5)
	}
	group := "/"
	if f.Exists(ModelGroup) {
		group = ModelGroup
	}
	for _, name := range archAttrs {
		if !h5.HasAttr(f, group, name) {
			f.Close()
			return nil, fmt.Errorf("%s %w: no attribute %s on %s (want a checkpoint with %s or a weight file with the architecture as root attributes)",
				path, ErrNoModel, name, group, ModelGroup)
		}
	}
	arch, err := ReadArch(f, group)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s %w: %w", path, ErrNoModel, err)
	}
	return &ModelFile{f: f, Group: group, Arch: arch}, nil
}

// ReadModelFile reads the tensors of the open model file m into ps (see
// ReadModelInto).
func ReadModelFile[T nf.Float](m *ModelFile, ps *nf.ParamSet[T]) error {
	return ReadModelInto(m.f, m.Group, ps)
}

// Close closes the file.
func (m *ModelFile) Close() error { return m.f.Close() }

// ReadTransfer reads the model of the checkpoint or model file at path into
// ps for a flow of architecture want on another lattice: the architecture
// in the file must equal want in everything but L (the weights of a
// convolutional conditioner do not depend on L). A different architecture
// is an error wrapping ErrCheckpointMismatch that names the attribute;
// the file's own errors are those of OpenModelFile.
func ReadTransfer[T nf.Float](path string, want nf.Arch, ps *nf.ParamSet[T]) error {
	m, err := OpenModelFile(path)
	if err != nil {
		return err
	}
	defer m.Close()
	got := m.Arch
	got.L = want.L
	if d := archDiff(got, want); d != "" {
		return fmt.Errorf("%s: %w: %s (only L may differ)", path, ErrCheckpointMismatch, strings.Replace(d, "in the checkpoint", "in the model file", 1))
	}
	return ReadModelFile(m, ps)
}
