package nfio

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"

	"nfschwinger/internal/h5"
	"nfschwinger/nf"
)

// CheckpointFormat is the format version of checkpoint files, the root
// attribute "format_version": 2 adds /history, 3 the learning-rate scale and
// recovery count of /train and the history columns probe_ess, probe_ess_err
// and recoveries. Readers also accept versions 1 and 2 (lr_scale 1, no
// recoveries, those columns NaN and 0) and refuse others.
const CheckpointFormat = 3

// TrainState is what a checkpoint holds besides the model: the progress of
// the run and the optimizer.
type TrainState struct {
	Step     int64     // training steps completed (the next step to run)
	Skipped  int64     // steps whose gradient was non-finite and not applied
	AdamStep int       // Adam updates applied (Step − Skipped)
	M, V     []float64 // Adam's first and second moments, ParamSet layout
	WallTime float64   // wall-clock seconds of training so far, summed over restarts
	Config   string    // the params.toml text of the run
	// InitFrom is the model file the run was started from
	// (train.init_from), "" for a random start; attribute init_from of
	// /train.
	InitFrom string
	// History holds the rows of history.h5 logged up to Step, so that a
	// restart can rebuild history.h5 without reading it (RestoreHistory);
	// nil when read from a format-1 checkpoint.
	History []HistoryRow
	// LRScale multiplies the learning-rate schedule: the product of the
	// recoveries' factors so far (1 before any; attribute lr_scale of
	// /train, format 3).
	LRScale float64
	// Recoveries counts the rollbacks after a divergence so far
	// (attribute recoveries of /train, format 3).
	Recoveries int64
}

// ErrCheckpointMismatch reports a checkpoint whose architecture differs
// from the one asked for.
var ErrCheckpointMismatch = errors.New("checkpoint does not match the configuration")

// ErrCheckpointCorrupt reports a checkpoint whose checksum or structure is
// wrong: truncated, altered or not a checkpoint.
var ErrCheckpointCorrupt = errors.New("checkpoint is corrupt")

// Checkpoint layout (all under the root of checkpoint.h5, followed by the
// checksum trailer of appendTrailer):
//
//	attributes  format_version (int), checksum_sha256 (hex string over the
//	            arrays and counters below, see checksum), created_by
//	/model      the flow (see WriteModel)
//	/optimizer  attributes step (Adam updates), lr_note; datasets
//	            m/<tensor name>, v/<tensor name> (float64, tensor shapes)
//	/train      attributes step (steps done), skipped (steps not applied),
//	            wall_time (seconds of training so far), init_from (the
//	            model file the run started from, "" for none)
//	/rng        attribute scheme: the prior samples of step t, global index
//	            i are ChaCha8 keyed by (seed, domain, t, i), so the step is
//	            the whole generator state of every rank
//	/config     attribute toml: the params.toml text
//	/history    the rows of history.h5 up to /train step, one dataset per
//	            column with the names and types of history.h5 (format 2)
const (
	optimizerGroup = "/optimizer"
	trainGroup     = "/train"
	historyGroup   = "/history"
)

// WriteCheckpoint writes the model, the optimizer state and the run's
// progress to path atomically (temporary file, fsync, rename), keeping the
// previous checkpoint as checkpoint.prev.h5 (PrevPath).
func WriteCheckpoint[T nf.Float](path string, arch nf.Arch, ps *nf.ParamSet[T], st TrainState) error {
	if len(st.M) != ps.Len() || len(st.V) != ps.Len() {
		panic(fmt.Sprintf("nfio: WriteCheckpoint: %d/%d moments for %d parameters", len(st.M), len(st.V), ps.Len()))
	}
	return WriteAtomic(path, true, func(tmp string) error {
		f, err := h5.Create(tmp)
		if err != nil {
			return err
		}
		if err := writeCheckpoint(f, arch, ps, st); err != nil {
			f.Close()
			return fmt.Errorf("write checkpoint %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return err
		}
		return appendTrailer(tmp)
	})
}

// The checkpoint trailer: the file ends with trailerMagic and the SHA-256 of
// every byte before the trailer. HDF5 ignores bytes past the end of its
// data, so h5py and h5dump read the file as usual; ReadCheckpoint verifies
// the trailer before HDF5 parses anything, because the HDF5 library can
// crash (not merely fail) on some corrupted metadata. A tool that rewrites
// the file drops the trailer, and the checkpoint is then refused.
const trailerMagic = "NFSCSUM1"

// trailerLen is the length of the trailer in bytes.
const trailerLen = len(trailerMagic) + sha256.Size

// appendTrailer appends the checksum trailer to the file at path.
func appendTrailer(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(append([]byte(trailerMagic), sum[:]...)); err != nil {
		f.Close()
		return fmt.Errorf("append checksum to %s: %w", path, err)
	}
	return f.Close()
}

// verifyTrailer checks the checksum trailer of the file at path.
func verifyTrailer(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	n := len(data) - trailerLen
	if n < 0 || string(data[n:n+len(trailerMagic)]) != trailerMagic {
		return errors.New("no checksum trailer (truncated, or not written by nfschwinger)")
	}
	if sum := sha256.Sum256(data[:n]); !bytes.Equal(sum[:], data[n+len(trailerMagic):]) {
		return errors.New("file checksum does not match (the file was altered or damaged)")
	}
	return nil
}

func writeCheckpoint[T nf.Float](f *h5.File, arch nf.Arch, ps *nf.ParamSet[T], st TrainState) error {
	if err := WriteModel(f, arch, ps); err != nil {
		return err
	}
	for _, t := range ps.Tensors {
		if err := h5.Write(f, optimizerGroup+"/m/"+t.Name, st.M[t.Offset:t.Offset+t.Size], t.Shape); err != nil {
			return err
		}
		if err := h5.Write(f, optimizerGroup+"/v/"+t.Name, st.V[t.Offset:t.Offset+t.Size], t.Shape); err != nil {
			return err
		}
	}
	attrs := []struct {
		path, name string
		v          int64
	}{
		{"/", "format_version", CheckpointFormat},
		{optimizerGroup, "step", int64(st.AdamStep)},
		{trainGroup, "step", st.Step},
		{trainGroup, "skipped", st.Skipped},
		{trainGroup, "recoveries", st.Recoveries},
	}
	for _, a := range attrs {
		if err := h5.WriteScalarAttr(f, a.path, a.name, a.v); err != nil {
			return err
		}
	}
	if err := h5.WriteScalarAttr(f, trainGroup, "wall_time", st.WallTime); err != nil {
		return err
	}
	if err := h5.WriteScalarAttr(f, trainGroup, "lr_scale", st.LRScale); err != nil {
		return err
	}
	if err := writeHistoryRows(f, historyGroup+"/", st.History); err != nil {
		return err
	}
	strs := []struct{ path, name, v string }{
		{"/", "created_by", "nfschwinger"},
		{"/", "checksum_sha256", checksum(ps.Data, st, CheckpointFormat)},
		{"/rng", "scheme", "ChaCha8 keyed by (train.seed, domain, step, global sample index): no state beyond /train step"},
		{"/config", "toml", st.Config},
		{trainGroup, "init_from", st.InitFrom},
	}
	for _, a := range strs {
		if err := h5.WriteStringAttr(f, a.path, a.name, a.v); err != nil {
			return err
		}
	}
	return nil
}

// ReadCheckpoint reads the checkpoint at path into ps and returns the run's
// state. The architecture stored in the file must equal want
// (ErrCheckpointMismatch otherwise) and the checksum must match
// (ErrCheckpointCorrupt otherwise); ps is then the model of the file. On
// error ps may hold partial data.
func ReadCheckpoint[T nf.Float](path string, want nf.Arch, ps *nf.ParamSet[T]) (TrainState, error) {
	var st TrainState
	if err := verifyTrailer(path); err != nil {
		return st, fmt.Errorf("read checkpoint %s: %w: %w", path, ErrCheckpointCorrupt, err)
	}
	f, err := h5.Open(path)
	if err != nil {
		return st, fmt.Errorf("read checkpoint %s: %w: %w", path, ErrCheckpointCorrupt, err)
	}
	defer f.Close()
	fail := func(kind error, err error) (TrainState, error) {
		return TrainState{}, fmt.Errorf("read checkpoint %s: %w: %w", path, kind, err)
	}
	version, err := h5.ReadScalarAttr[int64](f, "/", "format_version")
	if err != nil {
		return fail(ErrCheckpointCorrupt, err)
	}
	if version < 1 || version > CheckpointFormat {
		return fail(ErrCheckpointMismatch, fmt.Errorf("format version %d, this program reads 1 to %d", version, CheckpointFormat))
	}
	arch, err := ReadArch(f, ModelGroup)
	if err != nil {
		return fail(ErrCheckpointCorrupt, err)
	}
	if d := archDiff(arch, want); d != "" {
		return fail(ErrCheckpointMismatch, fmt.Errorf("%s", d))
	}
	if err := ReadModelInto(f, ModelGroup, ps); err != nil {
		return fail(ErrCheckpointCorrupt, err)
	}
	if st.M, st.V, err = readMoments(f, ps); err != nil {
		return fail(ErrCheckpointCorrupt, err)
	}
	if err := readTrainState(f, &st, version); err != nil {
		return fail(ErrCheckpointCorrupt, err)
	}
	sum, err := h5.ReadStringAttr(f, "/", "checksum_sha256")
	if err != nil {
		return fail(ErrCheckpointCorrupt, err)
	}
	if got := checksum(ps.Data, st, version); got != sum {
		return fail(ErrCheckpointCorrupt, fmt.Errorf("checksum %s, stored %s", got, sum))
	}
	return st, nil
}

// readMoments reads Adam's first and second moments (/optimizer/m/... and
// /optimizer/v/..., each tensor of ps's layout) into flat slices.
func readMoments[T nf.Float](f *h5.File, ps *nf.ParamSet[T]) (m, v []float64, err error) {
	m, v = make([]float64, ps.Len()), make([]float64, ps.Len())
	for _, t := range ps.Tensors {
		for _, mv := range []struct {
			name string
			dst  []float64
		}{{"m", m}, {"v", v}} {
			p := optimizerGroup + "/" + mv.name + "/" + t.Name
			data, shape, err := h5.Read[float64](f, p)
			if err != nil {
				return nil, nil, err
			}
			if !slices.Equal(shape, t.Shape) {
				return nil, nil, fmt.Errorf("%s has shape %v, want %v", p, shape, t.Shape)
			}
			copy(mv.dst[t.Offset:], data)
		}
	}
	return m, v, nil
}

// readTrainState reads the counters, the configuration and (from format
// version 2) the history rows and (from 3) the recoveries' state of a
// checkpoint of format version into st.
func readTrainState(f *h5.File, st *TrainState, version int64) error {
	ints := []struct {
		path, name string
		dst        *int64
	}{{trainGroup, "step", &st.Step}, {trainGroup, "skipped", &st.Skipped}}
	for _, a := range ints {
		v, err := h5.ReadScalarAttr[int64](f, a.path, a.name)
		if err != nil {
			return err
		}
		*a.dst = v
	}
	var err error
	if st.WallTime, err = h5.ReadScalarAttr[float64](f, trainGroup, "wall_time"); err != nil {
		return err
	}
	adam, err := h5.ReadScalarAttr[int64](f, optimizerGroup, "step")
	if err != nil {
		return err
	}
	st.AdamStep = int(adam)
	if st.Config, err = h5.ReadStringAttr(f, "/config", "toml"); err != nil {
		return err
	}
	if h5.HasAttr(f, trainGroup, "init_from") {
		if st.InitFrom, err = h5.ReadStringAttr(f, trainGroup, "init_from"); err != nil {
			return err
		}
	}
	if version >= 2 {
		if st.History, err = readHistoryRows(f, historyGroup+"/"); err != nil {
			return fmt.Errorf("%s: %w", historyGroup, err)
		}
	}
	st.LRScale = 1
	if version >= 3 {
		if st.LRScale, err = h5.ReadScalarAttr[float64](f, trainGroup, "lr_scale"); err != nil {
			return err
		}
		if st.Recoveries, err = h5.ReadScalarAttr[int64](f, trainGroup, "recoveries"); err != nil {
			return err
		}
	}
	return nil
}

// ReadCheckpointConfig returns the params.toml text stored in the
// checkpoint at path (attribute "toml" of /config), without reading the
// model: what analyze needs to label a run.
func ReadCheckpointConfig(path string) (string, error) {
	if err := verifyTrailer(path); err != nil {
		return "", fmt.Errorf("read checkpoint %s: %w: %w", path, ErrCheckpointCorrupt, err)
	}
	f, err := h5.Open(path)
	if err != nil {
		return "", fmt.Errorf("read checkpoint %s: %w: %w", path, ErrCheckpointCorrupt, err)
	}
	defer f.Close()
	text, err := h5.ReadStringAttr(f, "/config", "toml")
	if err != nil {
		return "", fmt.Errorf("read checkpoint %s: %w: %w", path, ErrCheckpointCorrupt, err)
	}
	return text, nil
}

// checksum is the SHA-256 of the parameters (as float64), the moments, the
// counters, the config text and the history rows (every column of every
// row, as 8 bytes each; none in format 1), in a fixed order, as hex. A
// file of format version covers what that format holds: the history
// columns of that version, and lr_scale and recoveries from format 3 on.
func checksum[T nf.Float](params []T, st TrainState, version int64) string {
	h := sha256.New()
	var b [8]byte
	put := func(v float64) {
		binary.LittleEndian.PutUint64(b[:], math.Float64bits(v))
		h.Write(b[:])
	}
	for _, v := range params {
		put(float64(v))
	}
	for _, v := range st.M {
		put(v)
	}
	for _, v := range st.V {
		put(v)
	}
	put(st.WallTime)
	for _, v := range []int64{st.Step, st.Skipped, int64(st.AdamStep)} {
		binary.LittleEndian.PutUint64(b[:], uint64(v))
		h.Write(b[:])
	}
	if version >= 3 {
		put(st.LRScale)
		binary.LittleEndian.PutUint64(b[:], uint64(st.Recoveries))
		h.Write(b[:])
	}
	h.Write([]byte(st.Config))
	h.Write([]byte(st.InitFrom))
	for i := range st.History {
		for _, c := range historyColumns {
			if c.since > version {
				continue
			}
			if c.i64 != nil {
				binary.LittleEndian.PutUint64(b[:], uint64(*c.i64(&st.History[i])))
				h.Write(b[:])
			} else {
				put(*c.f64(&st.History[i]))
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// archDiff describes the first difference between two architectures, ""
// when they are equal.
func archDiff(got, want nf.Arch) string {
	switch {
	case got.L != want.L:
		return fmt.Sprintf("lattice L = %d in the checkpoint, %d in the configuration", got.L, want.L)
	case got.NLayers != want.NLayers:
		return fmt.Sprintf("n_layers = %d in the checkpoint, %d in the configuration", got.NLayers, want.NLayers)
	case got.NKnots != want.NKnots:
		return fmt.Sprintf("n_knots = %d in the checkpoint, %d in the configuration", got.NKnots, want.NKnots)
	case !slices.Equal(got.Hidden, want.Hidden):
		return fmt.Sprintf("hidden_channels = %v in the checkpoint, %v in the configuration", got.Hidden, want.Hidden)
	case got.KernelSize != want.KernelSize:
		return fmt.Sprintf("kernel_size = %d in the checkpoint, %d in the configuration", got.KernelSize, want.KernelSize)
	case !slices.Equal(got.Dilation, want.Dilation):
		return fmt.Sprintf("dilation = %v in the checkpoint, %v in the configuration", got.Dilation, want.Dilation)
	case got.Masking != want.Masking:
		return fmt.Sprintf("masking = %q in the checkpoint, %q in the configuration", got.Masking, want.Masking)
	case got.LeakyReLUSlope != want.LeakyReLUSlope:
		return fmt.Sprintf("leaky_relu_slope = %v in the checkpoint, %v in the configuration", got.LeakyReLUSlope, want.LeakyReLUSlope)
	}
	return ""
}
