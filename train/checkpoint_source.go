package train

import (
	"os"
	"path/filepath"
)

// CheckpointSource reads checkpoints for every rank of a run: the leader
// (Leader true) alone opens the files, and Share hands what it read, or
// its error, to every rank (ShareBytes over the run's ranks, or several
// such in turn). Trainer and tensorparallel.Trainer resume through it.
type CheckpointSource struct {
	Leader bool
	Share  func(what string, data []byte, err error) ([]byte, error)
}

// Latest returns, on every rank, the newest checkpoint in dir that the
// leader found (LatestCheckpoint), or "" when there is none.
func (s CheckpointSource) Latest(dir string) (string, error) {
	var p string
	var err error
	if s.Leader {
		p, err = LatestCheckpoint(dir)
	}
	b, err := s.Share("checkpoint "+dir, []byte(p), err)
	return string(b), err
}

// Files returns ReadCheckpoint's read for the checkpoint at path: on
// every rank, the named file of it as the leader read it.
func (s CheckpointSource) Files(path string) func(name string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		var b []byte
		var err error
		if s.Leader {
			if b, err = os.ReadFile(filepath.Join(path, name)); err != nil {
				err = errorf("checkpoint %s: %w", path, err)
			}
		}
		return s.Share("checkpoint "+path, b, err)
	}
}
