package mpi

import "fmt"

// Error is an error that an MPI call returned: the communicators this
// package makes are set to MPI_ERRORS_RETURN, so that MPI reports a
// failure to the caller instead of ending the process.
type Error struct {
	Call string // the MPI function that failed, such as "MPI_Allreduce"
	Code int    // the error code it returned
	Text string // MPI_Error_string of Code
}

// Error returns "mpi: <call>: <MPI's text> (code <n>)".
func (e *Error) Error() string {
	return fmt.Sprintf("mpi: %s: %s (code %d)", e.Call, e.Text, e.Code)
}
