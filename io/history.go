package nfio

import (
	"errors"
	"fmt"
	"math"
	"os"

	"nfschwinger/internal/h5"
)

// HistoryRow is one logged training step: one row of history.h5.
type HistoryRow struct {
	Step         int64   // optimizer steps completed when the row was logged (1, 2, …)
	Loss         float64 // the estimator's surrogate loss, batch mean (dimensionless)
	ESS          float64 // effective sample size per configuration, eq. (26) of the paper, in (0, 1]
	LogqMean     float64 // batch mean of log q(φ), natural log of a density on [0, 2π)^(2V)
	LogpMean     float64 // batch mean of log p(φ) = −S(φ), unnormalized
	GradNorm     float64 // global L2 norm of the summed gradient, before clipping
	LearningRate float64 // learning rate used for the step
	Skipped      int64   // steps skipped so far for non-finite gradients (cumulative)
	WallTime     float64 // wall-clock seconds of training so far, summed over restarts
	Acceptance   float64 // MCMC acceptance rate of the flow after the step; NaN when not measured
	ThreePass    int64   // 1 when the step used the three-pass REINFORCE form, else 0
	// ProbeESS is the effective sample size per proposal of the acceptance
	// probe's chain (train.acceptance_every), with its bootstrap error
	// ProbeESSErr; NaN when not measured.
	ProbeESS, ProbeESSErr float64
	Recoveries            int64 // rollbacks after a divergence so far (cumulative)
}

// historyColumn describes one dataset of history.h5: its name, unit and
// meaning (stored as attributes), and the field of HistoryRow it holds.
type historyColumn struct {
	name, unit, doc string
	// since is the first format (CheckpointFormat) with the column; a
	// file without it reads as NaN (float) or 0 (integer).
	since int64
	i64   func(*HistoryRow) *int64   // integer columns
	f64   func(*HistoryRow) *float64 // float columns
}

// historyColumns is the layout of history.h5, in order.
var historyColumns = []historyColumn{
	{name: "step", unit: "1", doc: "optimizer steps completed", i64: func(r *HistoryRow) *int64 { return &r.Step }},
	{name: "loss", unit: "1", doc: "surrogate loss of the gradient estimator, batch mean", f64: func(r *HistoryRow) *float64 { return &r.Loss }},
	{name: "ess", unit: "1", doc: "effective sample size per configuration, eq. (26), in (0, 1]", f64: func(r *HistoryRow) *float64 { return &r.ESS }},
	{name: "logq_mean", unit: "1", doc: "batch mean of log q(phi)", f64: func(r *HistoryRow) *float64 { return &r.LogqMean }},
	{name: "logp_mean", unit: "1", doc: "batch mean of log p(phi) = -S(phi), unnormalized", f64: func(r *HistoryRow) *float64 { return &r.LogpMean }},
	{name: "grad_norm", unit: "1", doc: "global L2 norm of the gradient before clipping", f64: func(r *HistoryRow) *float64 { return &r.GradNorm }},
	{name: "learning_rate", unit: "1", doc: "learning rate of the step", f64: func(r *HistoryRow) *float64 { return &r.LearningRate }},
	{name: "skipped", unit: "1", doc: "steps skipped so far because of a non-finite gradient (cumulative)", i64: func(r *HistoryRow) *int64 { return &r.Skipped }},
	{name: "wall_time", unit: "s", doc: "wall-clock seconds of training so far, summed over restarts", f64: func(r *HistoryRow) *float64 { return &r.WallTime }},
	{name: "three_pass", unit: "1", doc: "1 when the step ran the three-pass REINFORCE form (one micro-batch per rank), 0 for the four-pass form and the other estimators", i64: func(r *HistoryRow) *int64 { return &r.ThreePass }},
	{name: "acceptance", unit: "1", doc: "Metropolis acceptance rate of the flow as proposal after the step (train.acceptance_every), NaN when not measured", f64: func(r *HistoryRow) *float64 { return &r.Acceptance }},
	{name: "probe_ess", unit: "1", since: 3, doc: "effective sample size per proposal, eq. (26), of the acceptance probe's proposals (train.acceptance_samples of them), NaN when not measured", f64: func(r *HistoryRow) *float64 { return &r.ProbeESS }},
	{name: "probe_ess_err", unit: "1", since: 3, doc: "bootstrap standard error of probe_ess, NaN when not measured", f64: func(r *HistoryRow) *float64 { return &r.ProbeESSErr }},
	{name: "recoveries", unit: "1", since: 3, doc: "rollbacks to the last good parameters after a divergence so far (cumulative; train.max_recoveries)", i64: func(r *HistoryRow) *int64 { return &r.Recoveries }},
}

// HistoryColumns returns the dataset names of history.h5, in order.
func HistoryColumns() []string {
	names := make([]string, len(historyColumns))
	for i, c := range historyColumns {
		names[i] = c.name
	}
	return names
}

// historyChunkRows is the chunk length of history.h5's datasets: 256 rows
// of 8 bytes, small enough for short runs, few chunks for long ones.
const historyChunkRows = 256

// History is history.h5 being written by a run. It is written by one
// process (rank 0) only; its methods are not collective.
//
// The file is never held open: the rows live in memory, and every Append
// (and SetSource) replaces the whole file atomically (WriteAtomic: a
// temporary file, fsync, rename). So history.h5 can be read at any time
// while a run writes it — by `nfschwinger analyze` and `watch`, by
// h5py.File(path) or h5dump, with HDF5's file locking on or off — as of
// its last logged step, and a writer killed at any moment leaves the
// previous complete file. A reader that keeps the file open keeps the
// version it opened. Rewriting costs O(rows): 1 MB a file at 10⁴ rows,
// written once per logged step.
type History struct {
	path    string
	rows    []HistoryRow
	source  string // root attribute init_from; "" for none
	planned int64  // root attribute train_steps; 0 for unknown
}

// CreateHistory creates (replacing) the history file at path with empty
// datasets.
func CreateHistory(path string) (*History, error) {
	h := &History{path: path}
	if err := h.Flush(); err != nil {
		return nil, err
	}
	return h, nil
}

// OpenHistory opens the history file at path to continue a run restarted
// after step afterStep: rows with step > afterStep (logged after the
// checkpoint the run restarts from) are dropped, so the restarted run
// appends no duplicates. Rows of a file whose columns have different
// lengths are cut to the shortest column. A missing file is created. A
// file without the expected datasets is an error.
func OpenHistory(path string, afterStep int64) (*History, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return CreateHistory(path)
	}
	f, err := h5.Open(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	rows, err := readHistoryRows(f, "")
	source := ""
	if err == nil && h5.HasAttr(f, "/", "init_from") {
		source, err = h5.ReadStringAttr(f, "/", "init_from")
	}
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("history: %s: %w: not a history file of this program", path, err)
	}
	keep := 0
	for keep < len(rows) && rows[keep].Step <= afterStep {
		keep++
	}
	h := &History{path: path, rows: rows[:keep], source: source}
	if err := h.Flush(); err != nil {
		return nil, err
	}
	return h, nil
}

// SetSource records in the root attribute "init_from" the model file a run
// was started from (transfer from another lattice size, train.init_from).
func (h *History) SetSource(path string) error {
	h.source = path
	return h.Flush()
}

// SetPlannedSteps records in the root attribute "train_steps" the steps the
// run is configured for (train.steps), for progress views.
func (h *History) SetPlannedSteps(n int64) error {
	h.planned = n
	return h.Flush()
}

// ReadPlannedSteps returns the root attribute "train_steps" of the history
// file at path, 0 when it has none.
func ReadPlannedSteps(path string) (int64, error) {
	f, err := h5.Open(path)
	if err != nil {
		return 0, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	if !h5.HasAttr(f, "/", "train_steps") {
		return 0, nil
	}
	n, err := h5.ReadScalarAttr[int64](f, "/", "train_steps")
	if err != nil {
		return 0, fmt.Errorf("history: %w", err)
	}
	return n, nil
}

// Rows returns a copy of every row.
func (h *History) Rows() ([]HistoryRow, error) {
	return append([]HistoryRow(nil), h.rows...), nil
}

// Len returns the number of rows.
func (h *History) Len() int { return len(h.rows) }

// Path returns the file name.
func (h *History) Path() string { return h.path }

// Append adds rows at the end and replaces the file, so that readers see
// them and a run killed afterwards keeps them.
func (h *History) Append(rows ...HistoryRow) error {
	if len(rows) == 0 {
		return nil
	}
	h.rows = append(h.rows, rows...)
	return h.Flush()
}

// Flush replaces the file by one holding every row (see History).
func (h *History) Flush() error { return h.write(false) }

// Close is a no-op kept for symmetry with the other writers: every row is
// in the file when Append returns.
func (h *History) Close() error { return nil }

// write replaces the file by the rows, keeping the file it replaces as
// PrevPath with keepPrev.
func (h *History) write(keepPrev bool) error {
	err := WriteAtomic(h.path, keepPrev, func(tmp string) error {
		f, err := h5.Create(tmp)
		if err != nil {
			return err
		}
		if err := writeHistoryFile(f, h.rows, h.source, h.planned); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// writeHistoryFile writes the layout of history.h5 into the empty file f:
// one extendible dataset per column holding rows, with their attributes,
// and the root's.
func writeHistoryFile(f *h5.File, rows []HistoryRow, source string, planned int64) error {
	for _, c := range historyColumns {
		var err error
		if c.i64 != nil {
			err = h5.CreateExtendible[int64](f, c.name, nil, historyChunkRows)
		} else {
			err = h5.CreateExtendible[float64](f, c.name, nil, historyChunkRows)
		}
		if err == nil {
			err = describeColumn(f, c)
		}
		if err != nil {
			return err
		}
	}
	if err := describeHistory(f); err != nil {
		return err
	}
	if source != "" {
		if err := h5.WriteStringAttr(f, "/", "init_from", source); err != nil {
			return err
		}
	}
	if planned > 0 {
		if err := h5.WriteScalarAttr(f, "/", "train_steps", planned); err != nil {
			return err
		}
	}
	if len(rows) == 0 {
		return nil
	}
	return eachHistoryColumn(rows, func(name string, ints []int64, floats []float64) error {
		if ints != nil {
			return h5.Append(f, name, ints)
		}
		return h5.Append(f, name, floats)
	})
}

// ReadHistory reads every row of the history file at path. Columns of
// unequal length (a crash between two appends) are cut to the shortest.
func ReadHistory(path string) ([]HistoryRow, error) {
	f, err := h5.Open(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	rows, err := readHistoryRows(f, "")
	if err != nil {
		return nil, fmt.Errorf("history: %s: %w", path, err)
	}
	return rows, nil
}

// readHistoryRows reads the history columns stored under group (prefix of
// the dataset names: "" for history.h5, historyGroup+"/" in a checkpoint),
// cut to the shortest column.
func readHistoryRows(f *h5.File, group string) ([]HistoryRow, error) {
	n := -1
	for _, c := range historyColumns {
		if c.since > 0 && !f.Exists(group+c.name) {
			continue // a file of an older format
		}
		if !f.Exists(group + c.name) {
			return nil, fmt.Errorf("no dataset %s", group+c.name)
		}
		r, err := h5.Rows(f, group+c.name)
		if err != nil {
			return nil, err
		}
		if n < 0 || r < n {
			n = r
		}
	}
	rows := make([]HistoryRow, n)
	for _, c := range historyColumns {
		if c.since > 0 && !f.Exists(group+c.name) {
			if c.f64 != nil {
				for i := range rows {
					*c.f64(&rows[i]) = math.NaN()
				}
			}
			continue
		}
		if c.i64 != nil {
			v, _, err := h5.ReadRows[int64](f, group+c.name, 0, n)
			if err != nil {
				return nil, err
			}
			for i := range rows {
				*c.i64(&rows[i]) = v[i]
			}
		} else {
			v, _, err := h5.ReadRows[float64](f, group+c.name, 0, n)
			if err != nil {
				return nil, err
			}
			for i := range rows {
				*c.f64(&rows[i]) = v[i]
			}
		}
	}
	return rows, nil
}

// writeHistoryRows writes rows as fixed-size column datasets under group
// (see readHistoryRows).
func writeHistoryRows(f *h5.File, group string, rows []HistoryRow) error {
	shape := []int{len(rows)}
	return eachHistoryColumn(rows, func(name string, ints []int64, floats []float64) error {
		if ints != nil {
			return h5.Write(f, group+name, ints, shape)
		}
		return h5.Write(f, group+name, floats, shape)
	})
}

// eachHistoryColumn calls fn for every column of historyColumns, in order,
// with the column's values of rows: ints for the integer columns, floats
// for the others (the other nil; the slices are reused between calls). It
// stops at the first error.
func eachHistoryColumn(rows []HistoryRow, fn func(name string, ints []int64, floats []float64) error) error {
	ints := make([]int64, len(rows))
	floats := make([]float64, len(rows))
	for _, c := range historyColumns {
		var err error
		if c.i64 != nil {
			for i := range rows {
				ints[i] = *c.i64(&rows[i])
			}
			err = fn(c.name, ints, nil)
		} else {
			for i := range rows {
				floats[i] = *c.f64(&rows[i])
			}
			err = fn(c.name, nil, floats)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// RestoreHistory replaces the history file at path by a new one holding
// rows (those of the checkpoint a run restarts from), and opens it for
// appending. The file that was there is never opened — HDF5 can crash or
// hang on a damaged file — but kept as history.prev.h5 (PrevPath),
// replacing an older one; its rows up to the checkpoint's step are the
// checkpoint's, and rows after it would be dropped on a restart anyway.
// The replacement is atomic (WriteAtomic).
func RestoreHistory(path string, rows []HistoryRow) (*History, error) {
	h := &History{path: path, rows: append([]HistoryRow(nil), rows...)}
	if err := h.write(true); err != nil {
		return nil, err
	}
	return h, nil
}

// describeColumn stores the unit and meaning of a column as attributes.
func describeColumn(f *h5.File, c historyColumn) error {
	if err := h5.WriteStringAttr(f, c.name, "unit", c.unit); err != nil {
		return err
	}
	return h5.WriteStringAttr(f, c.name, "description", c.doc)
}

// HistoryFormat and HistoryVersion identify history.h5 (root attributes
// "format" and "version").
const (
	HistoryFormat  = "nfschwinger history"
	HistoryVersion = 1
)

// describeHistory stores the file's format name and version as attributes
// of the root group.
func describeHistory(f *h5.File) error {
	if err := h5.WriteStringAttr(f, "/", "format", HistoryFormat); err != nil {
		return err
	}
	if err := h5.WriteScalarAttr[int64](f, "/", "version", HistoryVersion); err != nil {
		return err
	}
	return h5.WriteStringAttr(f, "/", "description",
		"one row per logged training step; every dataset is a column; rows with the same index belong together")
}
