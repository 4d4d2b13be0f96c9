package option

// Apply applies opts to c in order, skipping nil ones, and returns the
// first error an option returns; the options after it are not applied.
func Apply[T any, O ~func(*T) error](c *T, opts []O) error {
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(c); err != nil {
			return err
		}
	}
	return nil
}
