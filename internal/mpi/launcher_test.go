package mpi

import "testing"

func TestLaunchedAsMany(t *testing.T) {
	tests := []struct {
		env      map[string]string
		wantMany bool
		wantBy   string
	}{
		{env: nil},
		{env: map[string]string{"OMPI_COMM_WORLD_SIZE": "1"}},
		{env: map[string]string{"OMPI_COMM_WORLD_SIZE": "4"}, wantMany: true, wantBy: "Open MPI's mpirun (OMPI_COMM_WORLD_SIZE=4)"},
		{env: map[string]string{"PMI_SIZE": "1"}},
		{env: map[string]string{"PMI_SIZE": "2"}, wantMany: true, wantBy: "a PMI launcher (MPICH's mpiexec, Slurm) (PMI_SIZE=2)"},
		{env: map[string]string{"PMIX_RANK": "0"}},
		{env: map[string]string{"PMIX_RANK": "3"}, wantMany: true, wantBy: "a PMIx launcher (srun --mpi=pmix, prterun) (PMIX_RANK=3)"},
		{env: map[string]string{"OMPI_COMM_WORLD_SIZE": "many"}},
		{env: map[string]string{"OMPI_COMM_WORLD_SIZE": "1", "PMI_SIZE": "8"}, wantMany: true, wantBy: "a PMI launcher (MPICH's mpiexec, Slurm) (PMI_SIZE=8)"},
	}
	for i, tt := range tests {
		by, many := launchedAsMany(func(k string) string { return tt.env[k] })
		if many != tt.wantMany || by != tt.wantBy {
			t.Errorf("test %d (%v): got (%q, %v), want (%q, %v)", i, tt.env, by, many, tt.wantBy, tt.wantMany)
		}
	}
}
