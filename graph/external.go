package graph

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// externalRef is where a tensor's bytes live outside the model file.
type externalRef struct {
	location string // as written in the model, relative to the model's dir
	offset   int64
	length   int64 // -1 when the model does not say
}

// externalRefOf parses a tensor's external_data entries. ok is false for a
// tensor whose data is inline.
func externalRefOf(t *onnxpb.TensorProto) (ref externalRef, ok bool, err error) {
	if t.DataLocation != onnxpb.TensorProto_EXTERNAL {
		return ref, false, nil
	}
	ref.length = -1
	for _, e := range t.ExternalData {
		switch e.Key {
		case "location":
			ref.location = e.Value
		case "offset":
			if ref.offset, err = strconv.ParseInt(e.Value, 10, 64); err != nil || ref.offset < 0 {
				return ref, true, formatErrorf(t.Name, "bad external data offset %q", e.Value)
			}
		case "length":
			if ref.length, err = strconv.ParseInt(e.Value, 10, 64); err != nil || ref.length < 0 {
				return ref, true, formatErrorf(t.Name, "bad external data length %q", e.Value)
			}
		}
	}
	if ref.location == "" {
		return ref, true, formatErrorf(t.Name, "external data without a location")
	}
	if filepath.IsAbs(ref.location) || strings.HasPrefix(filepath.Clean(ref.location), "..") {
		return ref, true, formatErrorf(t.Name, "external data location %q must be inside the model's folder", ref.location)
	}
	return ref, true, nil
}

// externalStore maps external data files into memory, once each.
type externalStore struct {
	mu    sync.Mutex
	refs  int
	files map[string][]byte // absolute path -> mapping
	sizes map[string]int64
}

func newExternalStore() *externalStore {
	return &externalStore{refs: 1, files: map[string][]byte{}, sizes: map[string]int64{}}
}

// share returns the store for one more owner.
func (s *externalStore) share() *externalStore {
	s.mu.Lock()
	s.refs++
	s.mu.Unlock()
	return s
}

func (s *externalStore) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refs == 0 {
		return nil
	}
	s.refs--
	if s.refs > 0 {
		return nil
	}
	var first error
	for p, b := range s.files {
		if err := syscall.Munmap(b); err != nil && first == nil {
			first = errorf("unmapping %s: %w", p, err)
		}
		delete(s.files, p)
	}
	return first
}

// size returns the size of an external data file, caching it.
func (s *externalStore) size(path string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.sizes[path]; ok {
		return n, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		if os.IsNotExist(err) {
			return 0, errorf("external data file %s %w", path, pkgerr.Reworded("is missing", err))
		}
		return 0, errorf("external data file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, errorf("external data file %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	s.sizes[path] = fi.Size()
	return fi.Size(), nil
}

// bytes returns the mapped contents of path, mapping it on first use.
func (s *externalStore) bytes(path string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refs == 0 {
		return nil, errorf("external data %s read after Close", path)
	}
	if b, ok := s.files[path]; ok {
		return b, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, errorf("external data file %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, errorf("external data file %s: %w", path, err)
	}
	if fi.Size() == 0 {
		s.files[path] = []byte{}
		return s.files[path], nil
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, errorf("mapping external data file %s: %w", path, err)
	}
	s.files[path] = b
	return b, nil
}

// checkExternal verifies that every external tensor's file exists and holds
// the bytes the model says it does. It reads no tensor data.
func (m *Model) checkExternal() error {
	for _, t := range m.Proto.Graph.Initializer {
		ref, ok, err := externalRefOf(t)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		path := filepath.Join(m.Dir, ref.location)
		if err := checkInside(m.Dir, ref.location); err != nil {
			return formatErrorf(t.Name, "%w", err)
		}
		size, err := m.ext.size(path)
		if err != nil {
			return errorf("tensor %q: %w", t.Name, err)
		}
		want := ref.length
		if TypeOf(t).Size() > 0 {
			size, err := byteSize(t)
			if err != nil {
				return err
			}
			if want >= 0 && want != size {
				return formatErrorf(t.Name, "%s %v needs %d bytes of data, the model says %d are in %s", TypeOf(t), t.Dims, size, want, path)
			}
			want = size
		} else if want < 0 {
			return formatErrorf(t.Name, "external data of element type %s needs a length", TypeOf(t))
		}
		if ref.offset > size || want > size-ref.offset {
			return formatErrorf(t.Name, "external data %s holds %d bytes, need %d at offset %d", path, size, want, ref.offset)
		}
	}
	return nil
}

// externalBytes returns the external bytes of t, without copying.
func (m *Model) externalBytes(t *onnxpb.TensorProto, ref externalRef) ([]byte, error) {
	path := filepath.Join(m.Dir, ref.location)
	if err := checkInside(m.Dir, ref.location); err != nil {
		return nil, formatErrorf(t.Name, "%w", err)
	}
	b, err := m.ext.bytes(path)
	if err != nil {
		return nil, err
	}
	n := ref.length
	if n < 0 {
		if n, err = byteSize(t); err != nil {
			return nil, err
		}
	}
	if ref.offset > int64(len(b)) || n > int64(len(b))-ref.offset {
		return nil, formatErrorf(t.Name, "external data %s holds %d bytes, need %d at offset %d", path, len(b), n, ref.offset)
	}
	return b[ref.offset : ref.offset+n : ref.offset+n], nil
}

// checkInside refuses an external data location that, once symbolic links
// are followed, leads out of the model's folder dir (a link to
// /etc/passwd, say): a model file must not make peftonnx read, and copy
// into its outputs, files that the user never named. A location that does
// not exist is left for the caller to report.
func checkInside(dir, location string) error {
	if dir == "" {
		dir = "."
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil // the folder itself is missing: reported as a missing file
	}
	realPath, err := filepath.EvalSymlinks(filepath.Join(dir, location))
	if err != nil {
		return nil
	}
	rel, err := filepath.Rel(realDir, realPath)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return fmt.Errorf("external data location %q leads out of the model's folder, through a symbolic link, to %s: copy the file into the folder if it is meant to be read", location, realPath)
	}
	return nil
}

// ReleasePages tells the kernel that t's external data, where m has
// mapped it, is not needed for now: its pages leave the process's
// resident memory (the page cache keeps them, and the next read of t maps
// them again). It does nothing for inline data or a file m has not mapped.
func (m *Model) ReleasePages(t *onnxpb.TensorProto) error {
	ref, ok, err := externalRefOf(t)
	if err != nil || !ok {
		return err
	}
	n := ref.length
	if n < 0 {
		if n, err = byteSize(t); err != nil {
			return err
		}
	}
	s := m.ext
	s.mu.Lock()
	defer s.mu.Unlock()
	path := filepath.Join(m.Dir, ref.location)
	b, ok := s.files[path]
	if !ok || s.refs == 0 || n == 0 {
		return nil
	}
	page := int64(os.Getpagesize())
	start, end := ref.offset/page*page, min((ref.offset+n+page-1)/page*page, int64(len(b)))
	if start >= end {
		return nil
	}
	if err := syscall.Madvise(b[start:end], syscall.MADV_DONTNEED); err != nil {
		return errorf("tensor %q: releasing the pages of %s: %w", t.Name, path, err)
	}
	return nil
}
