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
}

// historyColumn describes one dataset of history.h5: its name, unit and
// meaning (stored as attributes), and the field of HistoryRow it holds.
type historyColumn struct {
	name, unit, doc string
	i64             func(*HistoryRow) *int64   // integer columns
	f64             func(*HistoryRow) *float64 // float columns
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

// History is history.h5 open for appending. It is written by one process
// (rank 0) only; its methods are not collective.
type History struct {
	f    *h5.File
	path string
	rows int
}

// CreateHistory creates (truncating) the history file at path with empty
// datasets.
func CreateHistory(path string) (*History, error) {
	f, err := h5.Create(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	for _, c := range historyColumns {
		if c.i64 != nil {
			err = h5.CreateExtendible[int64](f, c.name, nil, historyChunkRows)
		} else {
			err = h5.CreateExtendible[float64](f, c.name, nil, historyChunkRows)
		}
		if err == nil {
			err = describeColumn(f, c)
		}
		if err != nil {
			f.Close()
			os.Remove(path)
			return nil, fmt.Errorf("history: %w", err)
		}
	}
	if err := describeHistory(f); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("history: %w", err)
	}
	h := &History{f: f, path: path}
	if err := h.Flush(); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// OpenHistory opens the history file at path to continue a run restarted
// after step afterStep: rows with step > afterStep (logged after the
// checkpoint the run restarts from) are dropped, so the restarted run
// appends no duplicates. Rows of a crash that left the columns with
// different lengths are cut to the shortest column. A missing file is
// created. A file without the expected datasets is an error.
func OpenHistory(path string, afterStep int64) (*History, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return CreateHistory(path)
	}
	f, err := h5.OpenRW(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	h := &History{f: f, path: path}
	if err := h.truncateAfter(afterStep); err != nil {
		f.Close()
		return nil, fmt.Errorf("history: %w", err)
	}
	if err := h.Flush(); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// truncateAfter keeps the leading rows with step ≤ afterStep.
func (h *History) truncateAfter(afterStep int64) error {
	n := -1
	for _, c := range historyColumns {
		if !h.f.Exists(c.name) {
			return fmt.Errorf("%s: no dataset %s: not a history file of this program", h.path, c.name)
		}
		r, err := h5.Rows(h.f, c.name)
		if err != nil {
			return err
		}
		if n < 0 || r < n {
			n = r
		}
	}
	steps, _, err := h5.ReadRows[int64](h.f, "step", 0, n)
	if err != nil {
		return err
	}
	keep := 0
	for keep < n && steps[keep] <= afterStep {
		keep++
	}
	for _, c := range historyColumns {
		if err := h5.Truncate(h.f, c.name, keep); err != nil {
			return err
		}
	}
	h.rows = keep
	return nil
}

// SetSource records in the root attribute "init_from" the model file a run
// was started from (transfer from another lattice size, train.init_from).
func (h *History) SetSource(path string) error {
	if err := h5.WriteStringAttr(h.f, "/", "init_from", path); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return h.Flush()
}

// Rows reads every row of the open file.
func (h *History) Rows() ([]HistoryRow, error) {
	rows, err := readHistoryRows(h.f, "")
	if err != nil {
		return nil, fmt.Errorf("history: %s: %w", h.path, err)
	}
	return rows, nil
}

// Len returns the number of rows.
func (h *History) Len() int { return h.rows }

// Path returns the file name.
func (h *History) Path() string { return h.path }

// Append adds rows at the end of every column and flushes the file, so a
// run killed afterwards keeps them.
func (h *History) Append(rows ...HistoryRow) error {
	if len(rows) == 0 {
		return nil
	}
	err := eachHistoryColumn(rows, func(name string, ints []int64, floats []float64) error {
		if ints != nil {
			return h5.Append(h.f, name, ints)
		}
		return h5.Append(h.f, name, floats)
	})
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	h.rows += len(rows)
	return h.Flush()
}

// Flush writes HDF5's buffers to the file.
func (h *History) Flush() error {
	if err := h.f.Flush(); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// Close flushes and closes the file.
func (h *History) Close() error {
	if err := h.f.Close(); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
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
// The new file is written to a temporary file and renamed, so a crash
// leaves either the old or the new file in place.
func RestoreHistory(path string, rows []HistoryRow) (*History, error) {
	tmp := path + ".restore.tmp"
	h, err := CreateHistory(tmp)
	if err != nil {
		return nil, err
	}
	if err := h.Append(rows...); err != nil {
		h.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := h.Close(); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	if _, err := os.Stat(path); err == nil {
		if err := os.Rename(path, PrevPath(path)); err != nil {
			os.Remove(tmp)
			return nil, fmt.Errorf("history: keep the old file: %w", err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return OpenHistory(path, math.MaxInt64)
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
