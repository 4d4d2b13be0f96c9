package quantize

import (
	"errors"
	"testing"
)

// TestNewProblems checks that only the validation problems that were not
// there before the rewrite are reported.
func TestNewProblems(t *testing.T) {
	a, b := errors.New(`"284" is defined twice`), errors.New(`node "x" reads "y", which nothing defines`)
	before := problems(errors.Join(a))
	if err := newProblems(errors.Join(a), before); err != nil {
		t.Errorf("a problem of the input was reported: %v", err)
	}
	if err := newProblems(errors.Join(a, b), before); err == nil || err.Error() != b.Error() {
		t.Errorf("got %v, want only %v", err, b)
	}
	if err := newProblems(b, problems(nil)); err == nil || err.Error() != b.Error() {
		t.Errorf("a lone new problem: got %v, want %v", err, b)
	}
	if err := newProblems(nil, before); err != nil {
		t.Errorf("no problem: got %v", err)
	}
}
