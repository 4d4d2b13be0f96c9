package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/peftonnx/peftonnx/train"
)

// trainLog is an io.Writer that writes to a temporary file beside path,
// created on the first Write, and renamed to path by commit: the file
// appears complete or not at all. With an empty path it is not used.
type trainLog struct {
	path string
	f    *os.File
	err  error
}

func (l *trainLog) Write(b []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if l.f == nil {
		if l.f, l.err = os.CreateTemp(filepath.Dir(l.path), "."+filepath.Base(l.path)+".tmp-*"); l.err != nil {
			l.err = fmt.Errorf("--log-json %s: %v", l.path, l.err)
			return 0, l.err
		}
	}
	n, err := l.f.Write(b)
	if err != nil {
		l.err = fmt.Errorf("--log-json %s: %v", l.path, err)
	}
	return n, l.err
}

// commit renames what was written to path (an empty file if nothing was).
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
	tmp := l.f.Name()
	err := l.f.Sync()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, l.path)
	}
	l.f = nil
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("--log-json %s: %v", l.path, err)
	}
	return nil
}

// abort removes the temporary file unless commit renamed it.
func (l *trainLog) abort() {
	if l.f != nil {
		l.f.Close()
		os.Remove(l.f.Name())
		l.f = nil
	}
}

// trainWriteLossPlot draws the loss curve of records into path, through a
// temporary file.
func trainWriteLossPlot(path string, records []train.LogRecord) error {
	var buf bytes.Buffer
	if err := train.WriteLossPlot(&buf, records, 0, 0); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("train: %s: %v", path, err)
	}
	_, err = tmp.Write(buf.Bytes())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("train: %s: %v", path, err)
	}
	return nil
}
