//go:build !unix

package atomicfile

// isSyncUnsupported reports whether err says the file system cannot
// flush a folder; outside Unix, folders are not flushed at all.
func isSyncUnsupported(error) bool { return true }
