package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// event is one line of the events file a training run writes when
// NFSCHWINGER_EVENTS names one (app.EventsEnv): the tests read these
// machine-readable facts instead of parsing the progress lines.
type event struct {
	Event      string `json:"event"`
	Step       int    `json:"step"`
	Checkpoint string `json:"checkpoint"`
}

var eventFiles atomic.Int64

// newEventsFile returns a fresh events file name in dir and the
// environment entry that makes a run write it.
func newEventsFile(dir string) (path, env string) {
	path = filepath.Join(dir, fmt.Sprintf("events-%d.jsonl", eventFiles.Add(1)))
	return path, "NFSCHWINGER_EVENTS=" + path
}

// readEvents reads the events file at path (none: no events).
func readEvents(t testing.TB, path string) []event {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// A run killed while writing leaves at most a partial last line.
			break
		}
		evs = append(evs, e)
	}
	return evs
}

// lastEvent returns the last event of the kind in the file at path.
func lastEvent(t testing.TB, path, kind string) (event, bool) {
	t.Helper()
	evs := readEvents(t, path)
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Event == kind {
			return evs[i], true
		}
	}
	return event{}, false
}

// restartedAt is the step a run continued from a checkpoint (its "start"
// event), −1 when it started afresh or never got that far.
func restartedAt(t testing.TB, path string) int {
	t.Helper()
	if e, ok := lastEvent(t, path, "start"); ok && e.Checkpoint != "" {
		return e.Step
	}
	return -1
}

// lastStep is the last step a run logged (0 if none).
func lastStep(t testing.TB, path string) int {
	t.Helper()
	e, _ := lastEvent(t, path, "step")
	return e.Step
}

// stoppedAt is the step after which a run stopped on a signal (−1: it
// did not).
func stoppedAt(t testing.TB, path string) int {
	t.Helper()
	if e, ok := lastEvent(t, path, "stopped"); ok {
		return e.Step
	}
	return -1
}
