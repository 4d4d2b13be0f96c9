package main

import (
	"bytes"
	"fmt"

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
