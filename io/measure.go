package nfio

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"nfschwinger/internal/h5"
	"nfschwinger/lgt"
)

// The files of `nfschwinger measure`: the input holds the dataset "links"
// of shape (N, 2, L, L) (float32 or float64 angles θ_μ(x), index
// [config, μ, i, j]); the output one extendible dataset per observable
// (MeasureColumns, shape (N)), with -force "force" (N, 2, L, L), with a
// model "logq" (N) and "z" (N, 2, L, L), and the root attributes L, beta,
// kappa, source, description and, with a model, model.

// MeasureColumns are the per-configuration output datasets of measure,
// named as in the reference vectors, in order.
func MeasureColumns() []string {
	names := make([]string, len(observableColumns))
	for i, c := range observableColumns {
		names[i] = c.name
	}
	return names
}

// observableColumns are MeasureColumns with the field of lgt.Observables
// each holds.
var observableColumns = []struct {
	name string
	get  func(*lgt.Observables) float64
}{
	{"gauge_action", func(o *lgt.Observables) float64 { return o.GaugeAction }},
	{"fermion_action", func(o *lgt.Observables) float64 { return o.FermionAction }},
	{"action", func(o *lgt.Observables) float64 { return o.Action }},
	{"log_abs_det_D", func(o *lgt.Observables) float64 { return o.LogAbsDetD }},
	{"sign_det_D", func(o *lgt.Observables) float64 { return o.SignDetD }},
	{"condensate", func(o *lgt.Observables) float64 { return o.Condensate }},
	{"topological_charge", func(o *lgt.Observables) float64 { return o.TopologicalCharge }},
	{"mean_cos_plaquette", func(o *lgt.Observables) float64 { return o.MeanCosPlaquette }},
}

// ErrBadLinks reports an input file of measure that is not usable: not an
// HDF5 file, no dataset "links", a wrong shape, no configurations, an odd
// L or a non-finite angle. The message says which.
var ErrBadLinks = errors.New("bad links file")

// LinksFile is an input of measure, open for reading.
type LinksFile struct {
	f    *h5.File
	path string
	N, L int // configurations, lattice extent
}

// OpenLinks opens the input file at path and checks the dataset "links":
// shape (N, 2, L, L) with N ≥ 1 and L even, ≥ 2. Errors wrap ErrBadLinks.
func OpenLinks(path string) (*LinksFile, error) {
	f, err := h5.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: not an HDF5 file", path, ErrBadLinks)
	}
	fail := func(format string, args ...any) (*LinksFile, error) {
		f.Close()
		return nil, fmt.Errorf("%s: %w: "+format, append([]any{path, ErrBadLinks}, args...)...)
	}
	if !f.Exists("links") {
		return fail(`no dataset "links"`)
	}
	n, err := h5.Rows(f, "links")
	if err != nil {
		return fail(`dataset "links" must have shape (N, 2, L, L), it is a scalar`)
	}
	shape, err := f.Shape("links")
	if err != nil {
		return fail(`dataset "links": %v`, err)
	}
	if len(shape) != 4 || shape[1] != 2 || shape[2] != shape[3] {
		return fail(`dataset "links" has shape %s, want (N, 2, L, L)`, shapeString(shape))
	}
	l := shape[2]
	switch {
	case n == 0:
		return fail(`dataset "links" holds no configurations`)
	case l < 2 || l%2 != 0:
		return fail(`dataset "links" has L = %d: L must be even and at least 2`, l)
	}
	return &LinksFile{f: f, path: path, N: n, L: l}, nil
}

// shapeString writes a shape as Python does: (3,) or (3, 2).
func shapeString(shape []int) string {
	s := make([]string, len(shape))
	for i, v := range shape {
		s[i] = fmt.Sprint(v)
	}
	if len(s) == 1 {
		return "(" + s[0] + ",)"
	}
	return "(" + strings.Join(s, ", ") + ")"
}

// Read returns the links of configurations [b0, b0+n) as float64
// (n·2L² angles).
func (l *LinksFile) Read(b0, n int) ([]float64, error) {
	v, _, err := h5.ReadRows[float64](l.f, "links", b0, n)
	return v, err
}

// CheckFinite reads the file in chunks of chunk configurations and reports
// the first non-finite angle (an error wrapping ErrBadLinks).
func (l *LinksFile) CheckFinite(chunk int) error {
	v2 := 2 * l.L * l.L
	for b0 := 0; b0 < l.N; b0 += chunk {
		links, err := l.Read(b0, min(chunk, l.N-b0))
		if err != nil {
			return err
		}
		for k, v := range links {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				b, r := b0+k/v2, k%v2
				return fmt.Errorf("%s: %w: links[%d, %d, %d, %d] = %v: angles must be finite",
					l.path, ErrBadLinks, b, r/(l.L*l.L), r/l.L%l.L, r%l.L, v)
			}
		}
	}
	return nil
}

// Close closes the file.
func (l *LinksFile) Close() error { return l.f.Close() }

// MeasureMeta are the root attributes of a measure output.
type MeasureMeta struct {
	Params lgt.Params // L, β, κ
	Source string     // the input file
	Model  string     // the model's description, "" for none (no logq, z)
	Force  bool       // the output has "force"
}

// MeasureWriter is a measure output being written (by one process).
type MeasureWriter struct {
	f    *h5.File
	meta MeasureMeta
	col  []float64
}

// CreateMeasure creates the measure output at path (truncating) with empty
// extendible datasets of chunkRows-row chunks and the attributes of meta.
func CreateMeasure(path string, meta MeasureMeta, chunkRows int) (*MeasureWriter, error) {
	f, err := h5.Create(path)
	if err != nil {
		return nil, err
	}
	w := &MeasureWriter{f: f, meta: meta}
	if err := w.create(chunkRows); err != nil {
		f.Close()
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return w, nil
}

func (w *MeasureWriter) create(chunkRows int) error {
	l := w.meta.Params.L
	for _, c := range observableColumns {
		if err := h5.CreateExtendible[float64](w.f, c.name, nil, chunkRows); err != nil {
			return err
		}
	}
	if w.meta.Force {
		if err := h5.CreateExtendible[float64](w.f, "force", []int{2, l, l}, chunkRows); err != nil {
			return err
		}
	}
	if w.meta.Model != "" {
		if err := h5.CreateExtendible[float64](w.f, "logq", nil, chunkRows); err != nil {
			return err
		}
		if err := h5.CreateExtendible[float64](w.f, "z", []int{2, l, l}, chunkRows); err != nil {
			return err
		}
		if err := h5.WriteStringAttr(w.f, "/", "model", w.meta.Model); err != nil {
			return err
		}
	}
	p := w.meta.Params
	if err := h5.WriteScalarAttr(w.f, "/", "L", int64(p.L)); err != nil {
		return err
	}
	if err := h5.WriteScalarAttr(w.f, "/", "beta", p.Beta); err != nil {
		return err
	}
	if err := h5.WriteScalarAttr(w.f, "/", "kappa", p.Kappa); err != nil {
		return err
	}
	if err := h5.WriteStringAttr(w.f, "/", "source", w.meta.Source); err != nil {
		return err
	}
	return h5.WriteStringAttr(w.f, "/", "description",
		"nfschwinger measure: one value per configuration of source:/links; force = dS/dtheta; "+
			"with a model: logq = log q(links) = log prior + log J of the reverse flow, z = its reverse image; "+
			"conventions of shared/vectors/README.md")
}

// Append adds rows for len(obs) configurations: their observables, the
// force (len(obs)·2V; ignored without Force) and log q and z (len(obs) and
// len(obs)·2V; ignored without a model).
func (w *MeasureWriter) Append(obs []lgt.Observables, force, logq, z []float64) error {
	if cap(w.col) < len(obs) {
		w.col = make([]float64, len(obs))
	}
	col := w.col[:len(obs)]
	for _, c := range observableColumns {
		for i := range obs {
			col[i] = c.get(&obs[i])
		}
		if err := h5.Append(w.f, c.name, col); err != nil {
			return err
		}
	}
	if w.meta.Force {
		if err := h5.Append(w.f, "force", force); err != nil {
			return err
		}
	}
	if w.meta.Model != "" {
		if err := h5.Append(w.f, "logq", logq); err != nil {
			return err
		}
		return h5.Append(w.f, "z", z)
	}
	return nil
}

// Close closes the file.
func (w *MeasureWriter) Close() error { return w.f.Close() }
