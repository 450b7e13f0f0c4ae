package nfio

import (
	"errors"
	"nfschwinger/internal/h5"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProbe: a probe reports a readable file as nil, and a reader error, a
// crash and a hang of the child as ErrDamaged with what happened, without
// harm to the calling process.
func TestProbe(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "history.h5")
	h, err := CreateHistory(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Append(rows(1, 3, 1)...); err != nil {
		t.Fatal(err)
	}
	h.Close()
	junk := filepath.Join(dir, "junk.h5")
	if err := os.WriteFile(junk, []byte("not an HDF5 file"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer func(d time.Duration) { ProbeTimeout = d }(ProbeTimeout)
	ProbeTimeout = 2 * time.Second
	for _, c := range []struct {
		kind, path, want string // want: "" for success, else a part of the message
	}{
		{"history", good, ""},
		{"history", junk, "history"},
		{"chain", good, "chain"}, // a history is not a chain
		{"test-crash", good, "crashed"},
		{"test-hang", good, "did not finish"},
	} {
		err := probe(c.kind, c.path)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %s: %v", c.kind, filepath.Base(c.path), err)
		case c.want != "" && (!errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %s: error %v, want ErrDamaged mentioning %q", c.kind, filepath.Base(c.path), err, c.want)
		}
	}
}

// TestProbeInUse: a file that another writer holds open without SWMR (the
// HDF5 library locks it) is reported as ErrInUse, not as damaged, and
// reads again once closed; a history that a run is writing is never in
// use: it reads at every moment with the rows logged so far.
func TestProbeInUse(t *testing.T) {
	t.Setenv("HDF5_USE_FILE_LOCKING", "TRUE") // clusters often turn HDF5's locks off
	dir := t.TempDir()
	path := filepath.Join(dir, "history.h5")
	h, err := CreateHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	for s := int64(1); s <= 3; s++ {
		if err := h.Append(row(s)); err != nil {
			t.Fatal(err)
		}
		if err := ProbeHistory(path); err != nil {
			t.Errorf("history being written, after step %d: %v", s, err)
		}
		if got, err := ReadHistory(path); err != nil || len(got) != int(s) {
			t.Errorf("history being written, after step %d: %d rows, %v", s, len(got), err)
		}
	}
	h.Close()

	locked := filepath.Join(dir, "locked.h5")
	w, err := CreateHistory(locked)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	f, err := h5.OpenRW(locked) // another writer, not in SWMR mode
	if err != nil {
		t.Fatal(err)
	}
	err = ProbeHistory(locked)
	if !errors.Is(err, ErrInUse) || errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "open for writing") {
		t.Errorf("open history: %v, want ErrInUse (not ErrDamaged)", err)
	}
	f.Close()
	if err := ProbeHistory(locked); err != nil {
		t.Errorf("closed history: %v", err)
	}
}
