package procmem

import (
	"runtime"
	"testing"
)

func TestPeak(t *testing.T) {
	if runtime.GOOS != "linux" {
		if _, ok := Peak(); ok {
			t.Fatal("a peak outside Linux")
		}
		t.Skip("no /proc/self/status outside Linux")
	}
	before, ok := Peak()
	if !ok || before <= 0 {
		t.Fatalf("Peak() = %d, %v", before, ok)
	}
	// Touch 64 MiB: the peak grows by about that much.
	buf := make([]byte, 64<<20)
	for i := range buf {
		if i%4096 == 0 {
			buf[i] = 1
		}
	}
	after, _ := Peak()
	if after-before < 60<<20 {
		t.Errorf("peak grew by %d bytes after touching 64 MiB", after-before)
	}
	runtime.KeepAlive(buf)
	now, ok := Field("VmRSS")
	peak, _ := Peak()
	if !ok || now <= 0 || now > peak {
		t.Errorf("VmRSS %d (%v), peak %d", now, ok, peak)
	}
	if _, ok := Field("NoSuchField"); ok {
		t.Error("a field that is not there")
	}
}
