package nfio

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestPaths(t *testing.T) {
	tests := []struct{ in, tmp, prev string }{
		{"run/checkpoint.h5", "run/.checkpoint.h5.tmp", "run/checkpoint.prev.h5"},
		{"out.h5", ".out.h5.tmp", "out.prev.h5"},
		{"/a/b/noext", "/a/b/.noext.tmp", "/a/b/noext.prev"},
	}
	for _, tc := range tests {
		if got := TempPath(tc.in); got != tc.tmp {
			t.Errorf("TempPath(%q) = %q, want %q", tc.in, got, tc.tmp)
		}
		if got := PrevPath(tc.in); got != tc.prev {
			t.Errorf("PrevPath(%q) = %q, want %q", tc.in, got, tc.prev)
		}
	}
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeString(s string) func(string) error {
	return func(tmp string) error { return os.WriteFile(tmp, []byte(s), 0o644) }
}

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "checkpoint.h5")
	prev := PrevPath(target)

	// First version: no previous file to keep.
	if err := WriteAtomic(target, true, writeString("v1")); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, target); got != "v1" {
		t.Fatalf("target %q, want v1", got)
	}
	if _, err := os.Stat(prev); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("prev exists after the first write: %v", err)
	}
	// Second and third: the previous one is kept.
	for _, v := range []string{"v2", "v3"} {
		old := readString(t, target)
		if err := WriteAtomic(target, true, writeString(v)); err != nil {
			t.Fatal(err)
		}
		if got := readString(t, target); got != v {
			t.Fatalf("target %q, want %q", got, v)
		}
		if got := readString(t, prev); got != old {
			t.Fatalf("prev %q, want %q", got, old)
		}
	}
	// A stale temporary file from a crash is replaced.
	if err := os.WriteFile(TempPath(target), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteAtomic(target, false, func(tmp string) error {
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		f.WriteString("v4")
		return f.Close()
	}); err != nil {
		t.Fatal(err)
	}
	if readString(t, target) != "v4" || readString(t, prev) != "v2" {
		t.Fatalf("without keepPrev: target %q prev %q", readString(t, target), readString(t, prev))
	}
	// A failing writer leaves target and prev alone and no temporary file.
	boom := errors.New("boom")
	err := WriteAtomic(target, true, func(tmp string) error {
		os.WriteFile(tmp, []byte("half"), 0o644)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	if readString(t, target) != "v4" || readString(t, prev) != "v2" {
		t.Fatal("a failed write changed the files")
	}
	if _, err := os.Stat(TempPath(target)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left behind: %v", err)
	}
	// A writer that does not create the file is an error.
	if err := WriteAtomic(target, false, func(string) error { return nil }); err == nil {
		t.Fatal("no file written, but no error")
	}
	// Into a missing directory: an error, nothing created.
	if err := WriteAtomic(filepath.Join(dir, "nope", "x.h5"), false, writeString("x")); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("directory holds %d entries, want target and prev: %v", len(entries), entries)
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("SyncDir of a missing directory succeeded")
	}
}
