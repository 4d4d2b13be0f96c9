package main

import "testing"

func TestRankDevice(t *testing.T) {
	for _, tt := range []struct {
		device string
		rank   int
		want   string
	}{
		{"cuda", 3, "cuda:3"},
		{"GPU", 1, "cuda:1"},
		{"cuda:0", 2, "cuda:0"},
		{"cpu", 1, "cpu"},
	} {
		if got := rankDevice(tt.device, tt.rank); got != tt.want {
			t.Errorf("rankDevice(%q, %d) = %q, want %q", tt.device, tt.rank, got, tt.want)
		}
	}
}
