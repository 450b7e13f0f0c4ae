package nfio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// TempPath returns the temporary name under which WriteAtomic writes path:
// a hidden file ".NAME.tmp" in the same directory (so the final rename stays
// within one file system).
func TempPath(path string) string {
	dir, name := filepath.Split(path)
	return filepath.Join(dir, "."+name+".tmp")
}

// PrevPath returns the name under which WriteAtomic keeps the previous
// version of path: "checkpoint.h5" → "checkpoint.prev.h5" (".prev" before the
// extension; appended when there is none).
func PrevPath(path string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + ".prev" + ext
}

// WriteAtomic replaces the file at path by what write produces, so that a
// crash at any moment leaves either the old or the new file complete at
// path, never a partial one:
//
//  1. write is called with the temporary name TempPath(path) and creates
//     that file (any stale temporary file is removed first);
//  2. the temporary file is fsynced;
//  3. with keepPrev, an existing target is hard-linked (or, where links are
//     not supported, copied) to PrevPath(path), replacing an older one;
//  4. the temporary file is renamed over path, and the directory fsynced.
//
// When write or any step fails, the temporary file is removed, path is
// untouched and the error is returned (wrapped with the file name, and with
// syscall.ENOSPC where the disk is the likely cause: see NoSpace). Only one
// writer per target may run at a time.
func WriteAtomic(path string, keepPrev bool, write func(tmp string) error) (err error) {
	tmp := TempPath(path)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("write %s: remove stale temporary file: %w", path, err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := write(tmp); err != nil {
		need := int64(64 << 10)
		if fi, serr := os.Stat(path); serr == nil {
			need = max(need, fi.Size())
		}
		return NoSpace(err, filepath.Dir(path), need)
	}
	if err := syncFile(tmp); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if keepPrev {
		if err := keepPrevious(path); err != nil {
			return fmt.Errorf("write %s: keep previous version: %w", path, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// NoSpace explains a failed write of about need bytes into dir: HDF5 does
// not pass on the system's error, so where dir's file system has less than
// need bytes free the result wraps err and syscall.ENOSPC, "…: no space
// left on device (N bytes free in DIR)"; otherwise it is err.
func NoSpace(err error, dir string, need int64) error {
	if err == nil || errors.Is(err, syscall.ENOSPC) {
		return err
	}
	var st syscall.Statfs_t
	if serr := syscall.Statfs(dir, &st); serr != nil {
		return err
	}
	if free := int64(st.Bavail) * st.Bsize; free < need {
		return fmt.Errorf("%w: %w (%d bytes free in %s)", err, syscall.ENOSPC, free, dir)
	}
	return err
}

// keepPrevious makes PrevPath(path) a copy of path, if path exists, while
// path itself stays in place.
func keepPrevious(path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	prev := PrevPath(path)
	if err := os.Remove(prev); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Link(path, prev); err == nil {
		return nil
	}
	return copyFile(prev, path)
}

// copyFile copies src to dst (through a temporary file, then renamed) and
// syncs it.
func copyFile(dst, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := TempPath(dst)
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := syncFile(tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

// syncFile flushes the file at path to stable storage.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

// SyncDir flushes the directory entry list of dir, making renames and new
// files in it durable. File systems that cannot sync a directory (EINVAL)
// are accepted silently.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// ErrLocked reports a lock file that another live process holds (LockFile).
var ErrLocked = errors.New("locked by another process")

// LockFile takes an exclusive advisory lock (flock) on the file at path,
// creating it, without waiting, and returns the function that releases
// it. The lock lasts as long as the process that took it: the kernel drops
// it when the process dies, however it dies, so a stale lock never
// remains. A lock that another process holds is an error wrapping
// ErrLocked that names the holder's process ID (written into the file by
// the holder). The lock files are how a writer that lets readers in while
// it writes (SWMR, atomic replacement) still keeps a second writer out.
func LockFile(path string) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (process %s)", path, ErrLocked, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	return func() { f.Close() }, nil
}

// LockPath returns the lock file that guards the writer of path: a hidden
// ".NAME.lock" beside it.
func LockPath(path string) string {
	dir, name := filepath.Split(path)
	return filepath.Join(dir, "."+name+".lock")
}
