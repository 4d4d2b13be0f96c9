package raster

import (
	"image"
	"image/color"
)

// New returns a width×height image filled with bg.
func New(width, height int, bg color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	Fill(img, img.Bounds(), bg)
	return img
}

// Fill paints the rectangle r (Max exclusive) with c, clipped to img.
func Fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

// Box paints the pixels from (x0, y0) to (x1, y1), both included.
func Box(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	Fill(img, image.Rect(x0, y0, x1+1, y1+1), c)
}

// HLine paints row y from x0 to x1, both included.
func HLine(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	Box(img, x0, y, x1, y, c)
}

// VLine paints column x from y0 to y1, both included.
func VLine(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	Box(img, x, y0, x, y1, c)
}

// Line draws a line from (x0, y0) to (x1, y1), both ends included, with
// Bresenham's algorithm and a square pen of width pixels.
func Line(img *image.RGBA, x0, y0, x1, y1, width int, c color.RGBA) {
	width = max(width, 1)
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		Fill(img, image.Rect(x0, y0, x0+width, y0+width), c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}
