package npy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// Read reads one array from r, consuming exactly its bytes, so that arrays
// written one after another can be read in turn.
func Read(r io.Reader) (*Array, error) {
	a, err := read(r)
	if err != nil {
		return nil, errorf("%w", err)
	}
	return a, nil
}

// ReadFile reads the .npy file at path. Errors name the file. Bytes after
// the array's data are an error: an .npy file holds one array.
func ReadFile(path string) (*Array, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errorf("%s: %w", path, pkgerr.Reworded("no such file", err))
		}
		return nil, errorf("%w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, errorf("%s: %w", path, err)
	}
	if fi.IsDir() {
		return nil, errorf("%s: is a directory", path)
	}
	a, n, err := readCounted(f, fi.Size())
	if err != nil {
		return nil, errorf("%s: %w", path, err)
	}
	if n < fi.Size() {
		return nil, errorf("%s: %d bytes after the array's data (%s needs %d)", path, fi.Size()-n, a, len(a.Data))
	}
	return a, nil
}

func read(r io.Reader) (*Array, error) {
	a, _, err := readCounted(r, -1)
	return a, err
}

// readCounted reads one array and returns the number of bytes it took. When
// size is not negative it is the number of bytes r holds, which lets a
// truncated file be reported before its data is read.
func readCounted(r io.Reader, size int64) (*Array, int64, error) {
	var pre [len(magic) + 2]byte
	if n, err := io.ReadFull(r, pre[:]); err != nil {
		if n == 0 && err == io.EOF {
			return nil, 0, errors.New("empty file, not an .npy array")
		}
		if n < len(magic) || string(pre[:len(magic)]) == magic {
			return nil, 0, fmt.Errorf("truncated: %d bytes, not an .npy array", n)
		}
	}
	if string(pre[:len(magic)]) != magic {
		return nil, 0, fmt.Errorf("not an .npy file: bad magic %q, want %q", pre[:len(magic)], magic)
	}
	major, minor := pre[len(magic)], pre[len(magic)+1]
	var lenSize int
	switch major {
	case 1:
		lenSize = 2
	case 2, 3:
		lenSize = 4
	default:
		return nil, 0, fmt.Errorf("unsupported .npy format version %d.%d (supported: 1.0, 2.0, 3.0)", major, minor)
	}
	if minor != 0 {
		return nil, 0, fmt.Errorf("unsupported .npy format version %d.%d (supported: 1.0, 2.0, 3.0)", major, minor)
	}
	var lb [4]byte
	if _, err := io.ReadFull(r, lb[:lenSize]); err != nil {
		return nil, 0, errors.New("truncated header length")
	}
	hlen := int64(binary.LittleEndian.Uint32(lb[:]))
	if hlen > maxHeaderLen {
		return nil, 0, fmt.Errorf("header length %d is over the limit of %d bytes", hlen, maxHeaderLen)
	}
	consumed := int64(len(pre) + lenSize)
	if size >= 0 && consumed+hlen > size {
		return nil, 0, fmt.Errorf("truncated header: %d bytes, header needs %d", size-consumed, hlen)
	}
	text := make([]byte, hlen)
	if n, err := io.ReadFull(r, text); err != nil {
		return nil, 0, fmt.Errorf("truncated header: %d bytes, header needs %d", n, hlen)
	}
	consumed += hlen
	h, err := parseHeader(string(text))
	if err != nil {
		return nil, 0, err
	}
	n, err := dataSize(h.elem, h.shape)
	if err != nil {
		return nil, 0, err
	}
	a := &Array{DType: h.elem, Shape: h.shape}
	if size >= 0 && consumed+int64(n) > size {
		return nil, 0, fmt.Errorf("truncated data: %s needs %d bytes, file has %d", a, n, size-consumed)
	}
	// Read through a buffer that grows with the data, so that a header
	// that claims a huge shape cannot allocate more than the input holds.
	var buf bytes.Buffer
	if size >= 0 {
		buf.Grow(n)
	}
	got, err := io.CopyN(&buf, r, int64(n))
	if err != nil && err != io.EOF {
		return nil, 0, err
	}
	if got < int64(n) {
		return nil, 0, fmt.Errorf("truncated data: %s needs %d bytes, got %d", a, n, got)
	}
	a.Data = buf.Bytes()
	return a, consumed + int64(n), nil
}
