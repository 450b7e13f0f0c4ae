package sample

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// ReplicaFile returns the name of the chain file of replica r of an HMC
// job (one independent chain per rank): ChainFile for replica 0, the chain
// of a one-process run, and "chain.replicaR.h5" for the others.
func ReplicaFile(r int) string {
	if r == 0 {
		return ChainFile
	}
	return fmt.Sprintf("chain.replica%d.h5", r)
}

// ReplicaFiles returns the chain files of the replicas in dir: ChainFile
// and then replicas 1, 2, … as long as they exist.
func ReplicaFiles(dir string) []string {
	files := []string{filepath.Join(dir, ChainFile)}
	for r := 1; ; r++ {
		p := filepath.Join(dir, ReplicaFile(r))
		if _, err := os.Stat(p); err != nil {
			return files
		}
		files = append(files, p)
	}
}

// Combined is the estimate of independent chains of the same target
// (replicas): every observable's chain means combined by their lengths.
type Combined struct {
	Replicas    int                  `json:"replicas"`
	Steps       int                  `json:"steps"` // summed over the replicas
	Observables []CombinedObservable `json:"observables"`
	ExpMinusDH  Estimate             `json:"exp_minus_dH"` // HMC: ⟨e^{−ΔH}⟩, combined alike
}

// CombinedObservable is one observable over the replicas: the mean
// m = Σ nᵢ mᵢ / N with error (Σ nᵢ² eᵢ²)^{1/2} / N (mᵢ ± eᵢ the Γ-method
// estimate of replica i of nᵢ steps, N = Σ nᵢ), and χ²/dof =
// Σ (mᵢ − m)²/eᵢ² / (R − 1), near 1 when the replicas agree within their
// errors (NaN for one replica).
type CombinedObservable struct {
	Name     string `json:"name"`
	Mean     Num    `json:"mean"`
	Err      Num    `json:"err"`
	ChiSqDof Num    `json:"chi2_dof"`
}

// Combine combines the reports of independent chains (see Combined).
// Every report must list the same observables in the same order.
func Combine(reps []*Report) Combined {
	c := Combined{Replicas: len(reps)}
	steps := make([]float64, len(reps))
	for i, r := range reps {
		steps[i] = float64(r.Steps)
		c.Steps += r.Steps
	}
	for k, o := range reps[0].Observables {
		m, e := make([]float64, len(reps)), make([]float64, len(reps))
		for i, r := range reps {
			if r.Observables[k].Name != o.Name {
				panic("sample: Combine: reports of different observables")
			}
			m[i], e[i] = float64(r.Observables[k].Mean), float64(r.Observables[k].Err)
		}
		mean, err, chi := combineMeans(steps, m, e)
		c.Observables = append(c.Observables, CombinedObservable{Name: o.Name, Mean: Num(mean), Err: Num(err), ChiSqDof: Num(chi)})
	}
	m, e := make([]float64, len(reps)), make([]float64, len(reps))
	for i, r := range reps {
		m[i], e[i] = float64(r.ExpMinusDH.Value), float64(r.ExpMinusDH.Err)
	}
	mean, err, _ := combineMeans(steps, m, e)
	c.ExpMinusDH = Estimate{Num(mean), Num(err)}
	return c
}

// combineMeans returns the length-weighted mean of the means m with errors
// e of chains of n steps, its error and the χ²/dof of the means about it.
func combineMeans(n, m, e []float64) (mean, err, chiSqDof float64) {
	var N, v float64
	for i := range n {
		N += n[i]
		mean += n[i] * m[i]
		v += n[i] * n[i] * e[i] * e[i]
	}
	mean /= N
	err = math.Sqrt(v) / N
	if len(n) < 2 {
		return mean, err, math.NaN()
	}
	for i := range n {
		chiSqDof += (m[i] - mean) * (m[i] - mean) / (e[i] * e[i])
	}
	return mean, err, chiSqDof / float64(len(n)-1)
}

// PrintCombined prints the combined table.
func PrintCombined(w io.Writer, c Combined) {
	fmt.Fprintf(w, "\nCombined over %d independent chains (%d steps in all; Γ-method per chain)\n", c.Replicas, c.Steps)
	fmt.Fprintf(w, "  %-27s %-24s %s\n", "observable", "mean", "χ²/dof of the chains")
	for _, o := range c.Observables {
		fmt.Fprintf(w, "  %-27s %-24s %.2f\n", o.Name, FormatPM(o.Mean, o.Err), float64(o.ChiSqDof))
	}
	if !math.IsNaN(float64(c.ExpMinusDH.Value)) {
		fmt.Fprintf(w, "  %-27s %s\n", "<exp(-dH)>", FormatPM(c.ExpMinusDH.Value, c.ExpMinusDH.Err))
	}
}
