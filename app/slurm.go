package app

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"

	nfio "nfschwinger/io"
	"nfschwinger/slurm"
)

const slurmUsage = `usage: nfschwinger slurm PARAMS.toml > run.sbatch

Prints the Slurm batch script of the run PARAMS.toml describes, with the
resources of its [slurm] section (partition, account, nodes, ntasks,
cpus_per_task, gpus_per_task, time, signal_seconds, max_requeues; the
defaults where the section or a key is missing). PARAMS.toml is validated
as a run would, including that ntasks divides the batch. Submit the script
from the directory holding PARAMS.toml and the nfschwinger binary:

  sbatch run.sbatch                        requeues itself until the run is done
  slurm/submit_chain.sh N PARAMS.toml run.sbatch
                                           N jobs chained with afterany

flags:
`

// slurmOptions are the settings of `nfschwinger slurm`.
type slurmOptions struct {
	Params string // path of params.toml
}

// runSlurmCmd parses the command line of `nfschwinger slurm` and runs it.
func runSlurmCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("slurm", flag.ContinueOnError)
	pos, err := parseFlags(fs, args, slurmUsage, stdout)
	if err != nil || pos == nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("slurm: need one PARAMS.toml, got %d arguments (see nfschwinger slurm -h)", len(pos))
	}
	return runSlurm(slurmOptions{Params: pos[0]}, stdout, stderr)
}

// runSlurm renders the batch script of opts.Params to w. Without a [slurm]
// section it renders the defaults and says so on stderr.
func runSlurm(opts slurmOptions, w, stderr io.Writer) error {
	c, err := nfio.Load(opts.Params)
	if err != nil {
		return &UsageError{Err: err}
	}
	if c.Slurm == nil {
		// The defaults of the section are nfio's: parse the file again
		// with an empty [slurm] table appended (no [slurm] exists, so
		// the appended header opens the only one).
		d, err := nfio.Parse(c.Text + "\n[slurm]\n")
		if err != nil || d.Slurm == nil {
			return fmt.Errorf("slurm: defaults of [slurm]: %v", err)
		}
		c.Slurm = d.Slurm
		fmt.Fprintf(stderr, "nfschwinger slurm: %s has no [slurm] section: using the defaults\n", opts.Params)
	}
	// The job runs in the directory it is submitted from, which holds
	// params.toml.
	script, err := slurm.Render(*c.Slurm, filepath.Base(opts.Params))
	if err != nil {
		return &UsageError{Err: err}
	}
	_, err = io.WriteString(w, script)
	return err
}
