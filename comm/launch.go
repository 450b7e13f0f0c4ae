package comm

import (
	"fmt"
	"os"
	"strconv"
)

// EnvComm is the environment variable that overrides launcher detection:
// "mpi" or "single".
const EnvComm = "NFSCHWINGER_COMM"

// Launch says how the process was started, as read from its environment.
type Launch struct {
	MPI bool // initialise MPI
	// Size is the number of ranks the launcher announced (0 if it did not
	// say); Init checks it against MPI's own count.
	Size int
	// By names the variable that decided, for messages.
	By string
}

// Launched reads the environment (through getenv, os.Getenv when nil) and
// says whether this process is a rank of an MPI job: EnvComm if set; else
// the variables of Open MPI's mpirun (OMPI_COMM_WORLD_SIZE), of PMIx
// launchers (PMIX_RANK: mpirun of Open MPI 5, srun --mpi=pmix), of PMI
// launchers (PMI_RANK, PMI_SIZE: MPICH's hydra, srun --mpi=pmi2), or srun
// with more than one task (SLURM_STEP_NUM_TASKS > 1). A Slurm batch script
// that runs the binary without srun is a single process. An EnvComm value
// other than "mpi", "single" or empty is an error.
func Launched(getenv func(string) string) (Launch, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	size := func(key string) int {
		n, err := strconv.Atoi(getenv(key))
		if err != nil || n < 0 {
			return 0
		}
		return n
	}
	switch v := getenv(EnvComm); v {
	case "mpi":
		return Launch{MPI: true, By: EnvComm + "=mpi"}, nil
	case "single":
		return Launch{By: EnvComm + "=single"}, nil
	case "":
	default:
		return Launch{}, fmt.Errorf("comm: %s=%q: want \"mpi\" or \"single\"", EnvComm, v)
	}
	for _, key := range []string{"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK"} {
		if getenv(key) != "" {
			return Launch{MPI: true, Size: size(firstSet(getenv, "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS")), By: key}, nil
		}
	}
	if n := size("SLURM_STEP_NUM_TASKS"); n > 1 {
		return Launch{MPI: true, Size: n, By: "SLURM_STEP_NUM_TASKS"}, nil
	}
	return Launch{By: "no launcher"}, nil
}

// firstSet returns the first of keys that is set in the environment.
func firstSet(getenv func(string) string, keys ...string) string {
	for _, k := range keys {
		if getenv(k) != "" {
			return k
		}
	}
	return ""
}

// Init returns the communicator of this process: an MPI communicator over
// MPI_COMM_WORLD when Launched says so, else Single. It fails if MPI cannot
// give MPI_THREAD_SERIALIZED, or if the launcher announced more ranks than
// MPI sees (srun without a working --mpi plugin starts independent
// singletons that would each train alone). Call it once, early in main,
// and Close the result before exiting.
func Init() (Comm, error) {
	l, err := Launched(nil)
	if err != nil {
		return nil, err
	}
	if !l.MPI {
		return Single(), nil
	}
	c, err := initMPI()
	if err != nil {
		return nil, fmt.Errorf("comm: started as an MPI rank (%s): %w", l.By, err)
	}
	if l.Size > 0 && c.Size() != l.Size {
		_ = c.Close()
		return nil, fmt.Errorf("comm: the launcher started %d ranks but MPI sees %d (with srun, use --mpi=pmix or --mpi=pmi2)", l.Size, c.Size())
	}
	return c, nil
}
