package cuda

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MappedLibraries returns the files of the shared libraries this process
// has mapped (from /proc/self/maps) whose base name contains one of the
// given substrings, each once, in the order they were first mapped: which
// libcuda, libnvrtc and libcublas were really loaded, for the device
// check's report.
func MappedLibraries(substrs ...string) ([]string, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, fmt.Errorf("cuda: mapped libraries: %w", err)
	}
	defer f.Close()
	var libs []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || !strings.HasPrefix(fields[5], "/") {
			continue
		}
		path := fields[5]
		base := filepath.Base(path)
		for _, s := range substrs {
			if strings.Contains(base, s) && !seen[path] {
				seen[path] = true
				libs = append(libs, path)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cuda: mapped libraries: %w", err)
	}
	return libs, nil
}
