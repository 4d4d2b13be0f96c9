//go:build !unix

package atomicfile

import "os"

// isSyncUnsupported reports whether err says the file system cannot
// flush a folder; outside Unix, folders are not flushed at all.
func isSyncUnsupported(error) bool { return true }

// processAlive reports whether a process may be running; outside Unix it
// cannot tell, and says yes so that nothing is removed.
func processAlive(int) bool { return true }

// flock takes no lock outside Unix.
func flock(*os.File) error { return nil }
