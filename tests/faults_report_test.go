package tests

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// FaultReportEnv enables TestFaultReport (`make faults` sets it); `make
// test` runs the same scenarios through the TestFault* tests instead.
const FaultReportEnv = "NFSCHWINGER_FAULT_REPORT"

// TestFaultReport runs every fault scenario and prints the
// table of the README's reliability section: scenario, trials, runs that
// survived (ended as they must), runs with data lost (a final state that
// differs from the undisturbed run's, or a silent load of a bad
// checkpoint), and the time to recover (from the relaunch to its first new
// training step; median and maximum).
func TestFaultReport(t *testing.T) {
	if os.Getenv(FaultReportEnv) == "" {
		t.Skipf("set %s=1 (make faults) to print the fault report", FaultReportEnv)
	}
	scenarios := []func(*testing.T) faultResult{
		faultKillRandom, faultKillAtStep, faultSignal, faultCorrupt, faultDamagedHistory, faultDiskFull, faultNaN, faultRankKilled,
	}
	var rows []faultResult
	start := time.Now()
	for i, s := range scenarios {
		var r faultResult
		t.Run(fmt.Sprint(i), func(t *testing.T) { r = s(t) })
		if r.Scenario != "" {
			rows = append(rows, r)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| scenario | trials | runs survived | data lost | time to recover (median / max) | notes |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---|---|\n")
	var trials, survived, lost int
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %s |\n", r.Scenario, r.Trials, r.Survived, r.Lost, recoverText(r.Recover), r.Note)
		trials += r.Trials
		survived += r.Survived
		lost += r.Lost
	}
	fmt.Fprintf(&b, "| **all** | %d | %d | %d | | %v in all |\n", trials, survived, lost, time.Since(start).Round(100*time.Millisecond))
	fmt.Fprintf(&b, "\nRuns: L = 4, 2 coupling layers, hidden [8], batch 12, 12 steps, float32, checkpoint_every = 1; "+
		"\"survived\": continued to the undisturbed run's parameters, Adam state and history bit for bit, "+
		"or refused a bad checkpoint with exit status 2 without touching it.\n")
	fmt.Print(b.String())
}

// recoverText is "median / max" of ds in milliseconds, "-" when empty.
func recoverText(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f ms", d.Seconds()*1e3) }
	return ms(s[len(s)/2]) + " / " + ms(s[len(s)-1])
}
