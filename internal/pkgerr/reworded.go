package pkgerr

// Reworded returns an error whose message is text and that wraps err:
// a package tells a cause in its own words, such as "no such file" for an
// *fs.PathError, and errors.Is(..., fs.ErrNotExist) still holds.
func Reworded(text string, err error) error {
	return &reworded{text: text, err: err}
}

type reworded struct {
	text string
	err  error
}

func (r *reworded) Error() string { return r.text }

func (r *reworded) Unwrap() error { return r.err }
