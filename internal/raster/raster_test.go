package raster

import (
	"image"
	"image/color"
	"testing"
)

var (
	white = color.RGBA{255, 255, 255, 255}
	ink   = color.RGBA{10, 20, 30, 255}
)

// count returns how many pixels of img are c.
func count(img *image.RGBA, c color.RGBA) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if img.RGBAAt(x, y) == c {
				n++
			}
		}
	}
	return n
}

func TestShapes(t *testing.T) {
	img := New(20, 10, white)
	if n := count(img, white); n != 200 {
		t.Fatalf("New: %d white pixels, want 200", n)
	}
	Box(img, 2, 3, 4, 5, ink)
	if n := count(img, ink); n != 9 {
		t.Errorf("Box 3×3: %d pixels, want 9", n)
	}
	img = New(20, 10, white)
	HLine(img, -5, 30, 2, ink) // clipped, no panic
	VLine(img, 7, 0, 9, ink)
	if n := count(img, ink); n != 20+10-1 {
		t.Errorf("lines: %d pixels, want 29", n)
	}
}

func TestLine(t *testing.T) {
	for _, tt := range []struct{ x0, y0, x1, y1, want int }{
		{0, 0, 9, 0, 10}, // horizontal: every pixel of the row
		{0, 0, 9, 9, 10}, // diagonal: one pixel a step
		{9, 9, 0, 0, 10}, // reversed
		{3, 4, 3, 4, 1},  // a point
		{0, 0, 9, 3, 10}, // shallow: one pixel per column
		{0, 0, 2, 9, 10}, // steep: one pixel per row
	} {
		img := New(12, 12, white)
		Line(img, tt.x0, tt.y0, tt.x1, tt.y1, 1, ink)
		if n := count(img, ink); n != tt.want {
			t.Errorf("Line(%d,%d → %d,%d): %d pixels, want %d", tt.x0, tt.y0, tt.x1, tt.y1, n, tt.want)
		}
		for _, p := range []image.Point{{tt.x0, tt.y0}, {tt.x1, tt.y1}} {
			if img.RGBAAt(p.X, p.Y) != ink {
				t.Errorf("Line(%d,%d → %d,%d): end %v not drawn", tt.x0, tt.y0, tt.x1, tt.y1, p)
			}
		}
	}
	img := New(12, 12, white)
	Line(img, 0, 5, 9, 5, 2, ink)
	if n := count(img, ink); n != 22 {
		t.Errorf("2-pixel line: %d pixels, want 22", n)
	}
}

func TestText(t *testing.T) {
	if w := TextWidth("loss", 2); w != 4*6*2 {
		t.Errorf("TextWidth: %d, want 48", w)
	}
	img := New(60, 20, white)
	Text(img, 1, 1, "1", ink, 1)
	// '1' in the font: 1 + 2 + 1×4 + 3 pixels.
	if n := count(img, ink); n != 10 {
		t.Errorf("'1': %d pixels, want 10", n)
	}
	img = New(60, 20, white)
	Text(img, 1, 1, "a", ink, 2)
	lower := count(img, ink)
	img = New(60, 20, white)
	Text(img, 1, 1, "A", ink, 2)
	if upper := count(img, ink); lower != upper || upper == 0 {
		t.Errorf("'a' draws %d pixels and 'A' %d: want the same capital", lower, upper)
	}
	img = New(60, 20, white)
	Text(img, 1, 1, "~", ink, 1)
	if n := count(img, ink); n != 0 {
		t.Errorf("a character the font lacks drew %d pixels", n)
	}
}
