package mpi

import (
	"fmt"
	"strconv"
)

// launcherVars are the environment variables through which MPI launchers
// tell a process about its job: Open MPI's mpirun (OMPI_COMM_WORLD_SIZE),
// MPICH's Hydra and Slurm's PMI-2 (PMI_SIZE), and PMIx launchers such as
// Slurm's srun --mpi=pmix (PMIX_RANK, the process's own rank: any rank
// above 0 means more than one).
var launcherVars = []struct {
	name     string
	isRank   bool // the value is a rank, not a count of ranks
	describe string
}{
	{name: "OMPI_COMM_WORLD_SIZE", describe: "Open MPI's mpirun"},
	{name: "PMI_SIZE", describe: "a PMI launcher (MPICH's mpiexec, Slurm)"},
	{name: "PMIX_RANK", isRank: true, describe: "a PMIx launcher (srun --mpi=pmix, prterun)"},
}

// launchedAsMany reports whether the environment, read through getenv,
// says that a launcher started this process as one of several ranks, and
// names the launcher and the variable that says so.
func launchedAsMany(getenv func(string) string) (by string, many bool) {
	for _, v := range launcherVars {
		n, err := strconv.Atoi(getenv(v.name))
		if err != nil {
			continue
		}
		if (v.isRank && n > 0) || (!v.isRank && n > 1) {
			return fmt.Sprintf("%s (%s=%d)", v.describe, v.name, n), true
		}
	}
	return "", false
}
