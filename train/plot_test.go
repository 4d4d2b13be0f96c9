package train

import (
	"bytes"
	"image/png"
	"math"
	"testing"
)

func TestWriteLossPlot(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	var recs []LogRecord
	for s := 1; s <= 30; s++ {
		recs = append(recs, LogRecord{Step: s, Loss: f(3 + 7*math.Exp(-float64(s)/8))})
	}
	recs = append(recs, LogRecord{Step: 30, EvalLoss: f(3.5)}, LogRecord{Step: 31, Loss: f(math.NaN())})
	tests := []struct {
		name string
		recs []LogRecord
	}{
		{"curve", recs},
		{"one step", recs[:1]},
		{"empty", nil},
	}
	for i, tt := range tests {
		var buf bytes.Buffer
		if err := WriteLossPlot(&buf, tt.recs, 0, 0); err != nil {
			t.Fatalf("test %d (%s): %v", i, tt.name, err)
		}
		img, err := png.Decode(&buf)
		if err != nil {
			t.Fatalf("test %d (%s): not a PNG: %v", i, tt.name, err)
		}
		if b := img.Bounds(); b.Dx() != 640 || b.Dy() != 400 {
			t.Errorf("test %d (%s): got %v, want 640×400", i, tt.name, b)
		}
		// The curve's colour appears where there is a curve.
		blue := 0
		for y := range 400 {
			for x := range 640 {
				r, g, b, _ := img.At(x, y).RGBA()
				if r>>8 == 31 && g>>8 == 119 && b>>8 == 180 {
					blue++
				}
			}
		}
		if (blue > 0) != (len(tt.recs) > 0) {
			t.Errorf("test %d (%s): %d pixels of the training curve's colour", i, tt.name, blue)
		}
	}
	if err := WriteLossPlot(&bytes.Buffer{}, recs, 10, 10); err == nil {
		t.Errorf("a 10×10 plot: got no error")
	}
}
