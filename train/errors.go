package train

import (
	"errors"
	"fmt"
	"strings"
)

// errorf returns an error prefixed with the package name.
func errorf(format string, args ...any) error {
	return fmt.Errorf("train: "+format, args...)
}

// unprefixed returns err without its leading "train: ", for wrapping in a
// message that carries the prefix already.
func unprefixed(err error) error {
	if s, ok := strings.CutPrefix(err.Error(), "train: "); ok {
		return errors.New(s)
	}
	return err
}
