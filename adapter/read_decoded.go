package adapter

// readDecoded is how the adapter reads a file of one of its formats: read
// reads path (an error is wrapped as it is, so that errors.Is sees
// fs.ErrNotExist), and decode turns what it read into the result, whose
// FormatError then names path.
func readDecoded[R, T any](path string, read func(string) (R, error), decode func(R) (T, error)) (T, error) {
	var zero T
	raw, err := read(path)
	if err != nil {
		return zero, errorf("%w", err)
	}
	v, err := decode(raw)
	if err != nil {
		return zero, inFile(err, path)
	}
	return v, nil
}
