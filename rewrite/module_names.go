package rewrite

// LinearModules returns the module names of layers, each once, in the
// order in which they first appear: layers of one module (the parts of a
// fused projection) give one name.
func LinearModules(layers []Linear) []string {
	return uniqueModules(layers, func(l Linear) string { return l.Module })
}

// SiteModules returns the module names of sites, each once, in the order
// in which they first appear: the sites of one module (the parts of a
// fused projection) give one name.
func SiteModules(sites []Site) []string {
	return uniqueModules(sites, func(s Site) string { return s.Module })
}

// uniqueModules returns module(x) for each of items, leaving out the
// names seen before; never nil.
func uniqueModules[T any](items []T, module func(T) string) []string {
	out := []string{}
	seen := map[string]bool{}
	for _, x := range items {
		if name := module(x); !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}
