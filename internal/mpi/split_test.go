//go:build mpi

package mpi

import (
	"slices"
	"strings"
	"testing"
)

// TestSplit splits a world of 4 ranks as tensor and data parallelism do
// (TP groups {0,1} and {2,3}, DP groups {0,2} and {1,3}) and runs
// collectives in each group.
func TestSplit(t *testing.T) {
	if !onRank() {
		job{np: 4, args: loopbackOnly}.pass(t, "TestSplit")
		return
	}
	if world.Size() != 4 || world.LocalSize() != 4 {
		t.Fatalf("world: got %d ranks, %d on this machine; want 4 and 4", world.Size(), world.LocalSize())
	}
	r := world.Rank()
	tp, err := world.Split(r/2, r)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := world.Split(r%2, r)
	if err != nil {
		t.Fatal(err)
	}
	// members lists the world ranks of each group, in group rank order.
	groups := []struct {
		name    string
		c       *Comm
		members []int
	}{
		{"tp", tp, []int{r / 2 * 2, r/2*2 + 1}},
		{"dp", dp, []int{r % 2, r%2 + 2}},
	}
	for _, g := range groups {
		wantRank := slices.Index(g.members, r)
		if g.c.Rank() != wantRank || g.c.Size() != len(g.members) || g.c.LocalRank() != wantRank || g.c.LocalSize() != len(g.members) {
			t.Errorf("%s: got rank %d of %d (local %d of %d), want %d of %d on one machine", g.name, g.c.Rank(), g.c.Size(), g.c.LocalRank(), g.c.LocalSize(), wantRank, len(g.members))
		}

		sum := []float32{float32(r + 1), float32(10 * (r + 1))}
		if err := g.c.AllReduceSumFloat32(sum); err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
		var want float32
		for _, m := range g.members {
			want += float32(m + 1)
		}
		if sum[0] != want || sum[1] != 10*want {
			t.Errorf("%s allreduce: got %v, want [%v %v]", g.name, sum, want, 10*want)
		}

		recv := make([]float32, 2*len(g.members))
		if err := g.c.AllGatherFloat32([]float32{float32(10 * r), float32(10*r + 1)}, recv); err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
		for i, m := range g.members {
			if recv[2*i] != float32(10*m) || recv[2*i+1] != float32(10*m+1) {
				t.Errorf("%s allgather: got %v, want world rank %d's [%d %d] at %d", g.name, recv, m, 10*m, 10*m+1, 2*i)
			}
		}

		b := []float32{float32(r)}
		if err := g.c.BroadcastFloat32(b, 1); err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
		if b[0] != float32(g.members[1]) {
			t.Errorf("%s broadcast from group rank 1: got %v, want world rank %d", g.name, b[0], g.members[1])
		}
		if err := g.c.Barrier(); err != nil {
			t.Errorf("%s barrier: %v", g.name, err)
		}
	}

	reversed, err := world.Split(0, -r)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := reversed.Rank(), world.Size()-1-r; got != want {
		t.Errorf("split by key -rank: got rank %d, want %d", got, want)
	}

	evenColor := Undefined
	if r%2 == 0 {
		evenColor = 7
	}
	even, err := world.Split(evenColor, r)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case r%2 == 1 && even != nil:
		t.Errorf("split with Undefined: got a communicator of %d ranks, want nil", even.Size())
	case r%2 == 0 && (even == nil || even.Size() != 2 || even.Rank() != r/2):
		t.Errorf("split of the even ranks: got %+v, want rank %d of 2", even, r/2)
	}
	if _, err := world.Split(-2, r); err == nil || !strings.Contains(err.Error(), "color -2") {
		t.Errorf("split with color -2: got %v, want an error naming the color", err)
	}

	for _, c := range []*Comm{tp, dp, reversed, even} {
		if c == nil {
			continue
		}
		if err := c.Free(); err != nil {
			t.Errorf("Free: %v", err)
		}
	}
	if err := tp.Free(); err == nil || !strings.Contains(err.Error(), "freed") {
		t.Errorf("a second Free: got %v, want an error", err)
	}
	if err := tp.Barrier(); err == nil || !strings.Contains(err.Error(), "freed communicator") {
		t.Errorf("a barrier on a freed communicator: got %v, want an error", err)
	}
}
