package tests

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
)

// TestProbeESSRecorded: a run with acceptance probes records, at exactly
// the probe steps, the acceptance and the ESS of the probe's proposals
// with a positive bootstrap error (NaN in the other rows); on 2 ranks the
// probe equals the one-process probe (float64, within rankTol); analyze reports the last probe and
// watch shows it.
func TestProbeESSRecorded(t *testing.T) {
	c := trainCase{Steps: 12, CheckpointEvery: 12, Precision: "float64", Extra: []any{"train.acceptance_every", 4, "train.acceptance_samples", 96, "train.log_every", 1}}
	probes := map[int][3]float64{} // step → acceptance, ESS, error of one process
	for _, n := range []int{0, 2} {
		t.Run(fmt.Sprintf("%d ranks", max(n, 1)), func(t *testing.T) {
			if n > 0 {
				mpirunPath(t)
			}
			dir := t.TempDir()
			train(t, dir, c, n, 0)
			rows := readHistory(t, filepath.Join(dir, "run", "history.h5"))
			if len(rows) != c.Steps {
				t.Fatalf("%d history rows, want %d", len(rows), c.Steps)
			}
			for _, r := range rows {
				got := [3]float64{r.Acceptance, r.ProbeESS, r.ProbeESSErr}
				if r.Step%4 != 0 {
					if !math.IsNaN(got[0]) || !math.IsNaN(got[1]) || !math.IsNaN(got[2]) {
						t.Errorf("step %d: no probe is due, but acceptance, ESS, error = %v", r.Step, got)
					}
					continue
				}
				if !(got[0] > 0 && got[0] <= 1 && got[1] > 0 && got[1] <= 1 && got[2] > 0 && got[2] < 1) {
					t.Errorf("step %d: probe acceptance, ESS, error = %v", r.Step, got)
				}
				if n == 0 {
					probes[int(r.Step)] = got
				} else if want := probes[int(r.Step)]; !nearRel(got[:], want[:], rankTol) {
					t.Errorf("step %d on 2 ranks: probe %v, one process %v", r.Step, got, want)
				}
			}
			out, stderr, status := runNF(t, dir, "analyze", "-json", "-no-plots", "run")
			var a struct {
				Training struct {
					FinalProbeESS    float64 `json:"final_probe_ess"`
					FinalProbeESSErr float64 `json:"final_probe_ess_err"`
				}
			}
			if status != 0 || json.Unmarshal([]byte(out), &a) != nil {
				t.Fatalf("analyze: exit %d\n%s\n%s", status, out, stderr)
			}
			last := rows[len(rows)-1]
			if a.Training.FinalProbeESS != last.ProbeESS || a.Training.FinalProbeESSErr != last.ProbeESSErr {
				t.Errorf("analyze: last probe ESS %g ± %g, history %g ± %g", a.Training.FinalProbeESS, a.Training.FinalProbeESSErr, last.ProbeESS, last.ProbeESSErr)
			}
			out, _, status = runNF(t, dir, "watch", "-once", "run")
			if want := fmt.Sprintf("probe (step 12): ESS %.4f ± %.4f", last.ProbeESS, last.ProbeESSErr); status != 0 || !strings.Contains(out, want) {
				t.Errorf("watch -once: exit %d, want %q in\n%s", status, want, out)
			}
		})
	}
}

// nearRel reports whether a and b agree elementwise to tol relative.
func nearRel(a, b []float64, tol float64) bool {
	for i := range a {
		if math.Abs(a[i]-b[i]) > tol*math.Max(math.Abs(a[i]), math.Abs(b[i])) {
			return false
		}
	}
	return true
}
