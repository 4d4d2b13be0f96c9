package train

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// MaxLineBytes is the longest JSONL line that ReadJSONL reads, 16 MiB
// unless changed: far above a real example (a 4096-token text is some
// 20 KB), and it keeps one hostile line from taking the machine's memory.
// The CLI sets it from PEFTONNX_MAX_LINE_BYTES.
var MaxLineBytes = 16 << 20

// errLineTooLong is readLine's error for a line above MaxLineBytes.
var errLineTooLong = errors.New("line too long")

// readLine returns the next line of br without its newline, reading no
// more than MaxLineBytes of it: a longer line is errLineTooLong, and the
// rest of it is not read. At the end of the input it returns io.EOF with
// the last line, which may be empty.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > MaxLineBytes+1 { // +1: the newline
			return nil, errLineTooLong
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return bytes.TrimSuffix(line, []byte{'\n'}), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return line, io.EOF
		default:
			return nil, err
		}
	}
}
