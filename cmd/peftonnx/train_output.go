package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/internal/atomicfile"
	"github.com/peftonnx/peftonnx/train"
)

// trainLog is an io.Writer that writes to an atomicfile.File for path,
// created on the first Write, and put in place by commit: the file
// appears complete or not at all. With an empty path it is not used.
type trainLog struct {
	path string
	f    *atomicfile.File
	err  error
}

func (l *trainLog) Write(b []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if l.f == nil {
		if l.f, l.err = atomicfile.Create(l.path, 0o644); l.err != nil {
			l.err = fmt.Errorf("--log-json %s: %w", l.path, l.err)
			return 0, l.err
		}
	}
	n, err := l.f.Write(b)
	if err != nil {
		l.err = fmt.Errorf("--log-json %s: %w", l.path, err)
	}
	return n, l.err
}

// commit puts what was written at path (an empty file if nothing was).
func (l *trainLog) commit() error {
	if l.path == "" {
		return nil
	}
	if l.f == nil && l.err == nil {
		l.Write(nil)
	}
	if l.err != nil {
		return l.err
	}
	err := l.f.Commit()
	l.f = nil
	if err != nil {
		return fmt.Errorf("--log-json %s: %w", l.path, err)
	}
	return nil
}

// abort removes the temporary file unless commit put it in place.
func (l *trainLog) abort() {
	l.f.Abort()
	l.f = nil
}

// trainWriteLossPlot draws the loss curve of records into path, through a
// temporary file.
func trainWriteLossPlot(path string, records []train.LogRecord) error {
	var buf bytes.Buffer
	if err := train.WriteLossPlot(&buf, records, 0, 0); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// claimTrainOut makes sure that train can write its outputs before it
// trains: it creates --out where it is missing, locks it against another
// train run into the same folder, and checks that --out and the folder of
// --log-json and --merged take new files. The returned release unlocks
// --out and, when the run wrote nothing there, removes the folders it
// created; a folder that was there before is never removed.
func claimTrainOut(f *trainFlags) (release func(), err error) {
	if st, err := os.Stat(f.out); err == nil && !st.IsDir() {
		return nil, fmt.Errorf("train: --out %s is a file; want a directory", f.out)
	}
	created, err := makeDirs(f.out)
	if err != nil {
		return nil, fmt.Errorf("train: --out %s: %w", f.out, err)
	}
	unlock, err := atomicfile.Lock(f.out)
	if err != nil {
		removeCreated(f.out, created)
		if errors.Is(err, atomicfile.ErrLocked) {
			return nil, fmt.Errorf("train: --out %s is in use: another train run writes to it (it holds the folder's lock); wait for that run, or choose another --out", f.out)
		}
		return nil, fmt.Errorf("train: --out %s: %w", f.out, err)
	}
	release = func() {
		unlock()
		removeCreated(f.out, created)
	}
	checks := []struct{ flag, path string }{{"--out", filepath.Join(f.out, adapter.HFConfigFile)}, {"--log-json", f.logJSON}}
	if f.merged != "" {
		if _, err := os.Stat(filepath.Dir(f.merged)); err == nil {
			checks = append(checks, struct{ flag, path string }{"--merged", f.merged})
		}
	}
	for _, c := range checks {
		if c.path == "" {
			continue
		}
		if err := atomicfile.CheckWritable(c.path); err != nil {
			release()
			return nil, fmt.Errorf("train: %s %s cannot be written, so the run would fail once trained: %w", c.flag, c.path, err)
		}
	}
	return release, nil
}
