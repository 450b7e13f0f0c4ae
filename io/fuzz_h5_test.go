package nfio

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"nfschwinger/nf"
)

// Fuzz tests of the HDF5 readers on damaged files: a checkpoint
// or history file with one byte changed and/or cut short. The readers must
// return an error, never panic (nor crash inside the HDF5 library); a
// damaged checkpoint that still reads must hold exactly the original
// content (a silent load of altered data is the worst outcome), and its
// errors must be ErrCheckpointCorrupt or ErrCheckpointMismatch, the two the
// program acts on (fall back to checkpoint.prev.h5, or refuse).
//
// The seed corpus runs in every `go test`; fuzz with, for instance,
//
//	go test -run '^$' -fuzz FuzzReadCheckpoint -fuzztime 30s ./io/

// fuzzOriginal is the undamaged checkpoint and history of the fuzz tests,
// written once per process.
type fuzzOriginal struct {
	arch       nf.Arch
	ps         *nf.ParamSet[float32]
	st         TrainState
	ckpt, hist []byte
	rows       []HistoryRow
	setupErr   error
	once       sync.Once
}

var fuzzOrig fuzzOriginal

func fuzzFiles(tb testing.TB) *fuzzOriginal {
	o := &fuzzOrig
	o.once.Do(func() { o.setupErr = o.setup() })
	if o.setupErr != nil {
		tb.Fatal(o.setupErr)
	}
	return o
}

func (o *fuzzOriginal) setup() error {
	dir, err := os.MkdirTemp("", "nfio-fuzz-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	o.arch = nf.Arch{L: 4, NLayers: 2, NKnots: 4, Hidden: []int{3}, KernelSize: 3, Dilation: []int{1, 1}, Masking: "2x1", LeakyReLUSlope: 0.01}
	fl, err := nf.NewFlow[float32](o.arch, nf.CPU(1))
	if err != nil {
		return err
	}
	fl.Init(rand.New(rand.NewPCG(5, 1)))
	o.ps = fl.Params
	n := o.ps.Len()
	o.st = TrainState{Step: 9, Skipped: 1, AdamStep: 8, M: make([]float64, n), V: make([]float64, n), WallTime: 3.5, Config: "[lattice]\nL = 4\n"}
	r := rand.New(rand.NewPCG(5, 2))
	for i := range n {
		o.st.M[i], o.st.V[i] = r.NormFloat64(), r.Float64()
	}
	cp := filepath.Join(dir, "checkpoint.h5")
	if err := WriteCheckpoint(cp, o.arch, o.ps, o.st); err != nil {
		return err
	}
	hp := filepath.Join(dir, "history.h5")
	h, err := CreateHistory(hp)
	if err != nil {
		return err
	}
	for s := int64(1); s <= 5; s++ {
		row := HistoryRow{Step: s, Loss: -float64(s), ESS: 0.1 * float64(s), LearningRate: 1e-3, WallTime: float64(s)}
		if err := h.Append(row); err != nil {
			return err
		}
	}
	if err := h.Close(); err != nil {
		return err
	}
	if o.ckpt, err = os.ReadFile(cp); err != nil {
		return err
	}
	if o.hist, err = os.ReadFile(hp); err != nil {
		return err
	}
	o.rows, err = ReadHistory(hp)
	return err
}

// damage returns a copy of b with byte at (mod len) XORed with x, then cut
// to cut bytes (mod len+1) when cut is not 0.
func damage(b []byte, at uint32, x byte, cut uint32) []byte {
	d := slices.Clone(b)
	if len(d) > 0 {
		d[int(at)%len(d)] ^= x
	}
	if cut != 0 {
		d = d[:int(cut)%(len(d)+1)]
	}
	return d
}

// fuzzSeeds adds changes at offsets spread over a file of n bytes, and
// truncations.
func fuzzSeeds(f *testing.F, n int) {
	f.Add(uint32(0), byte(0), uint32(0)) // undamaged
	for _, at := range []int{0, 3, 8, 40, 100, 200, 400, 800, 1200, 2048, 3000, n / 3, n / 2, 2 * n / 3, n - 8, n - 1} {
		f.Add(uint32(at), byte(0xff), uint32(0))
		f.Add(uint32(at), byte(0x01), uint32(0))
	}
	for _, cut := range []int{1, 7, 96, 512, n / 4, n / 2, n - 1} {
		f.Add(uint32(0), byte(0), uint32(cut))
	}
}

// fuzzChildEnv names the damaged file a child test process reads
// (TestReadDamagedChild); fuzzKindEnv says which reader: "checkpoint" or
// "history".
const (
	fuzzChildEnv = "NFIO_FUZZ_CHILD"
	fuzzKindEnv  = "NFIO_FUZZ_KIND"
)

// readDamaged writes the damaged bytes d to a file and reads it where a
// crash inside the HDF5 library cannot take the test down:
//
//   - a checkpoint in a child process (this test binary, running
//     TestReadDamagedChild), which must pass: the reader returns an error
//     of the right kind, or the original content. Checkpoints are protected
//     by their checksum trailer, verified before HDF5 opens the file, so a
//     crash (the child dies of a signal inside C code) is a bug;
//   - a history file through ProbeHistory, as analyze reads it (a restart
//     never reads it: it rebuilds the file from the checkpoint). The probe
//     must return nil or an ErrDamaged error, whatever HDF5 does in its
//     child (crash, hang), and a file it passes must read in this process
//     with at most the original rows.
func readDamaged(t *testing.T, kind string, d []byte) {
	path := filepath.Join(t.TempDir(), kind+".h5")
	if err := os.WriteFile(path, d, 0o644); err != nil {
		t.Fatal(err)
	}
	if kind == "history" {
		if err := ProbeHistory(path); err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("probe of the damaged history: %v, not ErrDamaged", err)
			}
			return
		}
		checkDamagedHistory(t, fuzzFiles(t), path)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReadDamagedChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fuzzChildEnv+"="+path, fuzzKindEnv+"="+kind)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("reading the damaged %s: %v\n%s", kind, err, out)
	}
}

// TestReadDamagedChild is the child process of readDamaged; without
// fuzzChildEnv it does nothing.
func TestReadDamagedChild(t *testing.T) {
	path := os.Getenv(fuzzChildEnv)
	if path == "" {
		t.Skip("helper process of the fuzz tests")
	}
	o := fuzzFiles(t)
	switch os.Getenv(fuzzKindEnv) {
	case "checkpoint":
		checkDamagedCheckpoint(t, o, path)
	default:
		t.Fatalf("%s=%q", fuzzKindEnv, os.Getenv(fuzzKindEnv))
	}
}

// checkDamagedCheckpoint: ReadCheckpoint returns ErrCheckpointCorrupt or
// ErrCheckpointMismatch, or the original content (the damage hit bytes
// that carry nothing).
func checkDamagedCheckpoint(t *testing.T, o *fuzzOriginal, path string) {
	fl, err := nf.NewFlow[float32](o.arch, nf.CPU(1))
	if err != nil {
		t.Fatal(err)
	}
	st, err := ReadCheckpoint(path, o.arch, fl.Params)
	if err != nil {
		if !errors.Is(err, ErrCheckpointCorrupt) && !errors.Is(err, ErrCheckpointMismatch) {
			t.Fatalf("error is neither ErrCheckpointCorrupt nor ErrCheckpointMismatch: %v", err)
		}
		return
	}
	same := slices.EqualFunc(fl.Params.Data, o.ps.Data, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) &&
		slices.Equal(st.M, o.st.M) && slices.Equal(st.V, o.st.V) &&
		st.Step == o.st.Step && st.Skipped == o.st.Skipped && st.AdamStep == o.st.AdamStep &&
		st.WallTime == o.st.WallTime && st.Config == o.st.Config
	if !same {
		t.Fatal("a damaged checkpoint was loaded with different content")
	}
}

// checkDamagedHistory: a history file that a probe read reads here too,
// with at most the original rows. (History rows carry no checksum: a
// changed value may read back changed; the checkpoint is what a restart
// trusts.)
func checkDamagedHistory(t *testing.T, o *fuzzOriginal, path string) {
	rows, err := ReadHistory(path)
	if err != nil {
		t.Fatalf("the probe read the file, this process does not: %v", err)
	}
	if len(rows) > len(o.rows) {
		t.Errorf("%d rows read, the file had %d", len(rows), len(o.rows))
	}
}

// FuzzReadCheckpoint: ReadCheckpoint on a damaged checkpoint (see
// readDamaged).
func FuzzReadCheckpoint(f *testing.F) {
	o := fuzzFiles(f)
	fuzzSeeds(f, len(o.ckpt))
	f.Fuzz(func(t *testing.T, at uint32, x byte, cut uint32) {
		readDamaged(t, "checkpoint", damage(o.ckpt, at, x, cut))
	})
}

// FuzzReadHistory: ProbeHistory and ReadHistory on a damaged history file
// (see readDamaged).
func FuzzReadHistory(f *testing.F) {
	o := fuzzFiles(f)
	fuzzSeeds(f, len(o.hist))
	// A history file reads in milliseconds; longer is a hang (the HDF5
	// library spins on some damaged files: testdata/fuzz holds one). The
	// bound stays well inside the 10 s after which Go's fuzzing worker
	// panics on an input (internal/fuzz/worker.go, RunFuzzWorker).
	ProbeTimeout = 3 * time.Second
	f.Fuzz(func(t *testing.T, at uint32, x byte, cut uint32) {
		readDamaged(t, "history", damage(o.hist, at, x, cut))
	})
}
