// Package raster draws what peftonnx's PNG charts are made of (filled
// rectangles, axis-parallel and slanted lines, and text in a built-in 5×7
// bitmap font) onto an image.RGBA, clipped to its bounds. It needs no font
// files and no packages beyond the standard library, so that the loss plot
// of "peftonnx train" and the benchmark's scaling plot draw the same way
// everywhere.
package raster
