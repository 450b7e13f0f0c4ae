package app

import (
	"encoding/json"
	"fmt"
	"os"
)

// EventsEnv names a file to which a training run appends one JSON object
// per line for each event of the run, for scripts and tests that must not
// parse the human progress lines:
//
//	{"event":"start","step":K,"checkpoint":"PATH"}  the run starts at step K (0 and "" for a fresh start)
//	{"event":"step","step":K}                        a history row was logged after step K
//	{"event":"stopped","step":K}                     stopped by a signal after step K, checkpoint written (exit 75)
//	{"event":"done","step":K}                        training complete at step K
//
// Only rank 0 writes. Unset (the default): no file.
const EventsEnv = "NFSCHWINGER_EVENTS"

// Event is one line of the events file.
type Event struct {
	Event      string `json:"event"`
	Step       int64  `json:"step"`
	Checkpoint string `json:"checkpoint,omitempty"`
}

// events appends Events to the file named by EventsEnv; the zero value
// (and a nil pointer) writes nothing.
type events struct{ path string }

// newEvents returns the events writer of this process: rank 0 with
// EventsEnv set.
func newEvents(rank int) *events {
	if p := os.Getenv(EventsEnv); p != "" && rank == 0 {
		return &events{path: p}
	}
	return nil
}

// emit appends e; a failure is reported on stderr once per event and does
// not stop the run (the events are a side channel).
func (ev *events) emit(e Event) {
	if ev == nil {
		return
	}
	b, _ := json.Marshal(e)
	f, err := os.OpenFile(ev.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err == nil {
		_, err = f.Write(append(b, '\n'))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nfschwinger: %s: %v\n", EventsEnv, err)
	}
}
