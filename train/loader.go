package train

// LoaderOptions says how a Loader batches a dataset.
type LoaderOptions struct {
	// BatchSize is the number of examples per batch (> 0).
	BatchSize int
	// SeqLen truncates examples to this many tokens; 0 means no limit.
	SeqLen int
	// PadID fills padded positions.
	PadID int64
	// PadToSeqLen pads every batch to SeqLen instead of to its longest
	// example.
	PadToSeqLen bool
	// Shuffle reorders the examples every epoch, from Seed.
	Shuffle bool
	Seed    uint64
	// DropLast leaves out a last, smaller batch (HF's
	// dataloader_drop_last; off by default there too).
	DropLast bool
	// Inputs are the data fields that each batch carries in
	// Batch.Inputs.
	Inputs []DataInput
}

// Loader cuts a dataset into batches, epoch by epoch. Batch(epoch, i) is a
// pure function of the dataset, the options and its arguments: each
// epoch's order comes from its own generator seeded from Seed and the
// epoch number, so a resumed run sees exactly the batches that an
// uninterrupted one would, without replaying earlier epochs.
type Loader struct {
	data *Dataset
	opts LoaderOptions

	cachedEpoch int
	cached      []int
}

// NewLoader returns a loader over d.
func NewLoader(d *Dataset, opts LoaderOptions) (*Loader, error) {
	switch {
	case d == nil || len(d.Examples) == 0:
		return nil, errorf("loader: no examples")
	case opts.BatchSize <= 0:
		return nil, errorf("loader: batch size %d", opts.BatchSize)
	case opts.SeqLen < 0:
		return nil, errorf("loader: sequence length %d", opts.SeqLen)
	case opts.PadToSeqLen && opts.SeqLen == 0:
		return nil, errorf("loader: padding to the sequence length needs a sequence length")
	case opts.DropLast && len(d.Examples) < opts.BatchSize:
		return nil, errorf("loader: %s has %d examples, fewer than one batch of %d", d.Path, len(d.Examples), opts.BatchSize)
	}
	return &Loader{data: d, opts: opts, cachedEpoch: -1}, nil
}

// Options returns the loader's options.
func (l *Loader) Options() LoaderOptions { return l.opts }

// NumBatches returns the number of batches in an epoch.
func (l *Loader) NumBatches() int {
	n := len(l.data.Examples)
	if l.opts.DropLast {
		return n / l.opts.BatchSize
	}
	return (n + l.opts.BatchSize - 1) / l.opts.BatchSize
}

// Order returns the order in which epoch visits the examples: the identity
// without shuffling, else a permutation seeded from Seed and epoch.
func (l *Loader) Order(epoch int) []int {
	if l.cachedEpoch == epoch && l.cached != nil {
		return l.cached
	}
	n := len(l.data.Examples)
	var order []int
	if l.opts.Shuffle {
		order = NewRNG(deriveSeed(l.opts.Seed, uint64(epoch))).Perm(n)
	} else {
		order = make([]int, n)
		for i := range order {
			order[i] = i
		}
	}
	l.cachedEpoch, l.cached = epoch, order
	return order
}

// Batch returns batch i (0 <= i < NumBatches) of epoch. It panics on an
// index out of range: that is a programming error.
func (l *Loader) Batch(epoch, i int) Batch {
	if i < 0 || i >= l.NumBatches() {
		panic(errorf("loader: batch %d of %d", i, l.NumBatches()))
	}
	order := l.Order(epoch)
	lo := i * l.opts.BatchSize
	hi := min(lo+l.opts.BatchSize, len(order))
	return l.collate(order[lo:hi])
}

// Shard returns the part of batch i of epoch that rank, of ranks processes
// that share every batch (data parallelism), trains on: the rank-th run of
// BatchSize/ranks examples of the batch, in the batch's order, padded on
// its own. It returns false when that part is empty, as it may be in an
// epoch's last, shorter batch. It panics on an index out of range, or a
// BatchSize that ranks does not divide: those are programming errors.
func (l *Loader) Shard(epoch, i, rank, ranks int) (Batch, bool) {
	if i < 0 || i >= l.NumBatches() || ranks <= 0 || rank < 0 || rank >= ranks || l.opts.BatchSize%ranks != 0 {
		panic(errorf("loader: shard %d of %d of batch %d of %d (batch size %d)", rank, ranks, i, l.NumBatches(), l.opts.BatchSize))
	}
	order := l.Order(epoch)
	per := l.opts.BatchSize / ranks
	lo := min(i*l.opts.BatchSize+rank*per, len(order))
	hi := min(lo+per, len(order))
	if lo == hi {
		return Batch{}, false
	}
	return l.collate(order[lo:hi]), true
}

// collate returns the batch of the examples at indices.
func (l *Loader) collate(indices []int) Batch {
	exs := make([]Example, 0, len(indices))
	for _, k := range indices {
		exs = append(exs, l.data.Examples[k])
	}
	b := Collate(exs, l.opts.SeqLen, l.opts.PadID, l.opts.PadToSeqLen)
	collateInputs(&b, exs, l.opts.Inputs)
	return b
}
