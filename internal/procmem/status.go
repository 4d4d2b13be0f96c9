package procmem

import (
	"os"
	"strconv"
	"strings"
)

// Field returns a size field of /proc/self/status, such as "VmHWM",
// "VmRSS", "RssAnon" or "RssFile", in bytes. ok is false where the file or
// the field is missing.
func Field(name string) (bytes int64, ok bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, found := strings.Cut(line, ":")
		if !found || k != name {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, false
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, false
		}
		return kb << 10, true
	}
	return 0, false
}

// Peak returns the process's peak resident set size in bytes (VmHWM).
// Unlike getrusage's ru_maxrss, which Linux carries across execve, it is
// this program's own.
func Peak() (bytes int64, ok bool) { return Field("VmHWM") }
