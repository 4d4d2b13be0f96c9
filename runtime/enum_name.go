package runtime

import "fmt"

// enumName is the String of the package's enumerations: v's entry in
// names, or typeName(v) for a value without one.
func enumName[T ~int](v T, typeName string, names map[T]string) string {
	if name, ok := names[v]; ok {
		return name
	}
	return fmt.Sprintf("%s(%d)", typeName, int(v))
}
