// Package atomicfile is the one way peftonnx writes an output file: a
// reader of the destination sees its old content or the whole new
// content, never part of either, and nothing is left behind on an error.
//
// # Durability
//
// Every file is written to a temporary file in the destination's folder
// (named ".<name>.tmp-<random>", so that it is hidden and recognisable),
// then flushed to disk (fsync), given its final permissions, renamed over
// the destination, and the folder itself is flushed (fsync) so that the
// rename survives a crash. A Set does the same for several files: all are
// written and flushed before the first is renamed, then they are renamed
// in the order they were created. A Dir stages a whole folder beside its
// destination and renames it into place.
//
// # Limits
//
// POSIX has no way to rename two files at once: between the renames of a
// Set, a reader may see some files new and others old. Callers whose
// files must match (a model and its external data) record in one file
// what the other must hold, so that a mismatch is detected on read. A
// process killed between writing and renaming leaves its temporary file
// (named after its process number); the next Create or CreateDir for the
// same destination removes those whose process has ended, and Stale lists
// them.
//
// # Before writing
//
// CheckWritable tells whether a file can be created at a path, leaving
// nothing; Lock takes a folder's exclusive lock (flock on the folder), so
// that two commands do not write one output folder at once.
package atomicfile
