// Package slurm holds nfschwinger's Slurm batch script and renders it with
// the resources of a params.toml [slurm] section, so that the script and
// the run agree.
//
// The script itself, nfschwinger.sbatch in this directory, is embedded in
// the program (Template) and is also a working script on its own, with the
// defaults of the [slurm] section; submit_chain.sh beside it submits a run
// as a chain of dependent jobs. See README.md here for the workflow and
// the exit statuses the script acts on.
package slurm

import (
	_ "embed"
	"fmt"
	"regexp"
	"strings"

	nfio "nfschwinger/io"
)

// Template is the batch script slurm/nfschwinger.sbatch with the defaults
// of the [slurm] section (one node, one task, one CPU, one hour, signal 300
// s before the limit, at most 10 requeues, parameter file params.toml).
//
//go:embed nfschwinger.sbatch
var Template string

// safeWord matches what may stand unquoted in the script: Slurm names,
// times, file names without blanks or shell characters.
var safeWord = regexp.MustCompile(`^[A-Za-z0-9._/+:@%,=-]+$`)

// Render returns Template with the resources of s and params as the
// default parameter file (the script's first argument overrides it).
// params is the file name as the job sees it, relative to the directory
// the script is submitted from; Render does not touch the file system.
//
// s is expected to be valid as nfio.Load returns it; Render still refuses
// values that would break the script (counts < 1, a time limit that is
// not "HH:MM:SS" or not longer than the signal, names with blanks, quotes
// or shell characters), so the output is always a well-formed script.
func Render(s nfio.SlurmConfig, params string) (string, error) {
	switch {
	case s.Nodes < 1 || s.NTasks < 1 || s.CPUsPerTask < 1 || s.GPUsPerTask < 0 || s.MaxRequeues < 0:
		return "", fmt.Errorf("slurm: invalid resources nodes=%d ntasks=%d cpus_per_task=%d gpus_per_task=%d max_requeues=%d",
			s.Nodes, s.NTasks, s.CPUsPerTask, s.GPUsPerTask, s.MaxRequeues)
	case s.SignalSeconds < 1 || s.SignalSeconds >= s.TimeLimitSeconds():
		return "", fmt.Errorf("slurm: signal_seconds = %d must be in [1, time = %q)", s.SignalSeconds, s.Time)
	case s.Partition != "" && !safeWord.MatchString(s.Partition):
		return "", fmt.Errorf("slurm: partition %q contains blanks, quotes or shell characters", s.Partition)
	case s.Account != "" && !safeWord.MatchString(s.Account):
		return "", fmt.Errorf("slurm: account %q contains blanks, quotes or shell characters", s.Account)
	case params == "" || strings.ContainsAny(params, "\n\x00"):
		return "", fmt.Errorf("slurm: bad parameter file name %q", params)
	}

	lines := strings.Split(Template, "\n")
	set := func(old, new string) {
		n := 0
		for i, l := range lines {
			if l == old {
				lines[i] = new
				n++
			}
		}
		if n != 1 {
			panic(fmt.Sprintf("slurm: template has %d lines %q, want 1", n, old))
		}
	}
	set("#SBATCH --nodes=1", fmt.Sprintf("#SBATCH --nodes=%d", s.Nodes))
	set("#SBATCH --ntasks=1", fmt.Sprintf("#SBATCH --ntasks=%d", s.NTasks))
	set("#SBATCH --cpus-per-task=1", fmt.Sprintf("#SBATCH --cpus-per-task=%d", s.CPUsPerTask))
	set("#SBATCH --time=01:00:00", "#SBATCH --time="+s.Time)
	set("#SBATCH --signal=USR1@300", fmt.Sprintf("#SBATCH --signal=USR1@%d", s.SignalSeconds))
	if s.GPUsPerTask > 0 {
		set("##SBATCH --gpus-per-task=1", fmt.Sprintf("#SBATCH --gpus-per-task=%d", s.GPUsPerTask))
	}
	if s.Partition != "" {
		set("##SBATCH --partition=PARTITION", "#SBATCH --partition="+s.Partition)
	}
	if s.Account != "" {
		set("##SBATCH --account=ACCOUNT", "#SBATCH --account="+s.Account)
	}
	set("params=${1:-params.toml}", "params=${1:-"+shellQuote(params)+"}")
	set("max_requeues=${NFSCHWINGER_MAX_REQUEUES:-10}", fmt.Sprintf("max_requeues=${NFSCHWINGER_MAX_REQUEUES:-%d}", s.MaxRequeues))

	header := []string{lines[0],
		fmt.Sprintf("# Rendered by `nfschwinger slurm %s` from its [slurm] section: submit it", params),
		"# from the directory holding " + params + " and the nfschwinger binary.",
	}
	return strings.Join(append(header, lines[1:]...), "\n"), nil
}

// shellQuote returns w as one shell word: unchanged when it holds no
// special characters, else in single quotes.
func shellQuote(w string) string {
	if safeWord.MatchString(w) {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}
