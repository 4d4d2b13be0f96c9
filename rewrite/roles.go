package rewrite

import (
	"strconv"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Role is what a linear layer does in a transformer block, as the graph's
// structure shows it (see FindLinears).
type Role string

// The roles that FindLinears recognises. The empty Role is none.
const (
	RoleQuery  Role = "q"    // attention query projection
	RoleKey    Role = "k"    // attention key projection
	RoleValue  Role = "v"    // attention value projection
	RoleOutput Role = "o"    // attention output projection
	RoleGate   Role = "gate" // MLP gate (SwiGLU)
	RoleUp     Role = "up"   // MLP input projection
	RoleDown   Role = "down" // MLP output projection
)

// structureName is the module name a layer of role r in block b gets where
// nothing else names it: LLaMA's spelling.
func structureName(b int, r Role) string {
	prefix := "layers." + strconv.Itoa(b) + "."
	switch r {
	case RoleGate, RoleUp, RoleDown:
		return prefix + "mlp." + string(r) + "_proj"
	}
	return prefix + "self_attn." + string(r) + "_proj"
}

// passOps are the nodes that roles looks through between a projection and
// the attention products: head reshapes, transposes, scaling, casts and
// rotary embeddings.
var passOps = map[string]bool{
	"Reshape": true, "Transpose": true, "Identity": true, "Cast": true, "Squeeze": true, "Unsqueeze": true,
	"Mul": true, "Div": true, "Add": true, "Sub": true, "Neg": true, "Concat": true, "Slice": true, "Split": true,
	"RotaryEmbedding": true, "Expand": true, "Tile": true,
}

// fusedAttention are the com.microsoft attention ops that take separate
// query, key and value inputs (onnxruntime-genai's exports).
var fusedAttention = map[string]bool{"MultiHeadAttention": true, "GroupQueryAttention": true}

// activationOps mark an MLP's gate: its output goes through one first.
var activationOps = map[string]bool{
	"Sigmoid": true, "Relu": true, "Gelu": true, "FastGelu": true, "BiasGelu": true, "Tanh": true, "Erf": true,
	"Softplus": true, "QuickGelu": true, "HardSigmoid": true, "Elu": true,
}

// assignRoles sets Role and Block on the layers of ls that form attention
// blocks as standard exports lay them out: three projections of one
// activation, two of which meet in the score product (query on its left,
// key on its right) while the third is multiplied by the scores (value),
// or which feed a fused attention op as its query, key and value, or
// one projection split in three that does the same (qkv),
// a projection of that product (output), and after it the MLP: one or two
// projections of one activation (gate, which an activation follows, and
// up) and one back to the hidden size (down). Blocks count from 0 in
// topological order. Layers that fit no such pattern keep no role.
func assignRoles(m *graph.Model, ls []Linear) {
	isLinear := map[*onnxpb.NodeProto]bool{}
	byInput := map[string][]int{}
	for i, l := range ls {
		isLinear[l.Node] = true
		byInput[l.Input] = append(byInput[l.Input], i)
	}
	block := 0
	var qs []int // the query of each block, in order
	var contexts []string
	for i := range ls {
		if ctx, ok := fusedQKV(m, ls[i], isLinear); ok {
			ls[i].Role, ls[i].Block = RoleQKV, block
			qs = append(qs, i)
			contexts = append(contexts, ctx)
			block++
			continue
		}
		group := byInput[ls[i].Input]
		if group[0] != i || len(group) < 3 {
			continue
		}
		q, k, v, ctx := findQKV(m, ls, group, isLinear)
		if q < 0 {
			continue
		}
		ls[q].Role, ls[k].Role, ls[v].Role = RoleQuery, RoleKey, RoleValue
		for _, j := range []int{q, k, v} {
			ls[j].Block = block
		}
		qs = append(qs, q)
		contexts = append(contexts, ctx)
		block++
	}
	for b, ctx := range contexts {
		end := len(ls)
		if b+1 < len(qs) {
			end = qs[b+1]
		}
		o := -1
		for j := qs[b] + 1; j < end; j++ {
			if ls[j].Role == "" && reachesBack(m, ls[j].Input, ctx) {
				o = j
				break
			}
		}
		if o < 0 {
			continue
		}
		ls[o].Role, ls[o].Block = RoleOutput, b
		assignMLP(m, ls, o+1, end, b, ls[o].Out)
	}
}

// findQKV finds query, key and value among the projections of one
// activation (group), and the value product's output, or returns q < 0.
func findQKV(m *graph.Model, ls []Linear, group []int, isLinear map[*onnxpb.NodeProto]bool) (q, k, v int, ctx string) {
	type arrival struct {
		node *onnxpb.NodeProto
		side int
	}
	arr := make([]arrival, len(group))
	for i, j := range group {
		arr[i].node, arr[i].side = firstProduct(m, ls[j].Output, isLinear)
	}
	// A fused attention op takes query, key and value as its first three
	// inputs.
	for a := range group {
		for b := range group {
			for c := range group {
				n := arr[a].node
				if n != nil && fusedAttention[n.OpType] && arr[b].node == n && arr[c].node == n && arr[a].side == 0 && arr[b].side == 1 && arr[c].side == 2 {
					return group[a], group[b], group[c], n.Output[0]
				}
			}
		}
	}
	q, k, v = -1, -1, -1
	for a := range group {
		for b := range group {
			if a == b || arr[a].node == nil || arr[a].node != arr[b].node || arr[a].side != 0 || arr[b].side != 1 {
				continue
			}
			for c := range group {
				if c != a && c != b && arr[c].node != nil && arr[c].node != arr[a].node && arr[c].side == 1 {
					return group[a], group[b], group[c], arr[c].node.Output[0]
				}
			}
		}
	}
	return -1, -1, -1, ""
}

// fusedQKV reports whether l projects query, key and value at once (GPT-2's
// c_attn): its output, after a bias, is split in three parts that arrive
// as findQKV's three do, and returns the value product's output.
func fusedQKV(m *graph.Model, l Linear, isLinear map[*onnxpb.NodeProto]bool) (string, bool) {
	v := l.Output
	if cs := m.Consumers(v); len(cs) == 1 && cs[0].OpType == "Add" && l.Bias != "" {
		v = cs[0].Output[0]
	}
	for steps := 0; steps < 2; steps++ { // a 2-D Gemm's output is reshaped back first
		if cs := m.Consumers(v); len(cs) == 1 && (cs[0].OpType == "Reshape" || cs[0].OpType == "Identity") {
			v = cs[0].Output[0]
		}
	}
	cs := m.Consumers(v)
	if len(cs) != 1 || cs[0].OpType != "Split" || len(cs[0].Output) != 3 {
		return "", false
	}
	var nodes [3]*onnxpb.NodeProto
	var sides [3]int
	for i, o := range cs[0].Output {
		nodes[i], sides[i] = firstProduct(m, o, isLinear)
		if nodes[i] == nil {
			return "", false
		}
	}
	if nodes[0] == nodes[1] && sides[0] == 0 && sides[1] == 1 && nodes[2] != nodes[0] && sides[2] == 1 {
		return nodes[2].Output[0], true
	}
	return "", false
}

// firstProduct follows value forward through passOps to the first MatMul
// of two activations and returns it with the input side it arrives on.
func firstProduct(m *graph.Model, value string, isLinear map[*onnxpb.NodeProto]bool) (*onnxpb.NodeProto, int) {
	type step struct {
		value string
		depth int
	}
	queue := []step{{value, 0}}
	seen := map[string]bool{value: true}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, c := range m.Consumers(s.value) {
			if isLinear[c] {
				continue
			}
			if fusedAttention[c.OpType] {
				for side, in := range c.Input {
					if in == s.value {
						return c, side
					}
				}
			}
			if c.OpType == "MatMul" && len(c.Input) == 2 && m.Initializer(c.Input[0]) == nil && m.Initializer(c.Input[1]) == nil {
				for side, in := range c.Input {
					if in == s.value {
						return c, side
					}
				}
			}
			if !passOps[c.OpType] || s.depth >= 12 {
				continue
			}
			for _, o := range c.Output {
				if !seen[o] {
					seen[o] = true
					queue = append(queue, step{o, s.depth + 1})
				}
			}
		}
	}
	return nil, 0
}

// reachesBack reports whether value comes from target through passOps
// that take their data as the first input.
func reachesBack(m *graph.Model, value, target string) bool {
	for steps := 0; steps < 8; steps++ {
		if value == target {
			return true
		}
		p := m.Producer(value)
		if p == nil || !passOps[p.OpType] || len(p.Input) == 0 {
			return false
		}
		value = p.Input[0]
	}
	return false
}

// assignMLP gives the MLP roles among ls[from:end] of block b, whose
// hidden size is hidden: the first projections from hidden (up, or gate
// and up where two read one activation) and the first projection after
// them from their width back to hidden (down).
func assignMLP(m *graph.Model, ls []Linear, from, end, b int, hidden int64) {
	first := -1
	for j := from; j < end; j++ {
		if ls[j].Role == "" && ls[j].In == hidden && ls[j].Out != hidden {
			first = j
			break
		}
	}
	if first < 0 {
		return
	}
	var ups []int
	for j := first; j < end; j++ {
		if ls[j].Input == ls[first].Input && ls[j].Role == "" {
			ups = append(ups, j)
		}
	}
	if len(ups) > 2 {
		return
	}
	width := ls[first].Out
	down := -1
	for j := first + 1; j < end; j++ {
		if ls[j].Role == "" && ls[j].In == width && ls[j].Out == hidden && ls[j].Input != ls[first].Input {
			down = j
			break
		}
	}
	if down < 0 {
		return
	}
	if len(ups) == 2 {
		g0, g1 := activated(m, ls[ups[0]].Output), activated(m, ls[ups[1]].Output)
		if g0 == g1 {
			return
		}
		gate, up := ups[0], ups[1]
		if g1 {
			gate, up = up, gate
		}
		ls[gate].Role, ls[gate].Block = RoleGate, b
		ls[up].Role, ls[up].Block = RoleUp, b
	} else {
		ls[first].Role, ls[first].Block = RoleUp, b
	}
	ls[down].Role, ls[down].Block = RoleDown, b
}

// activated reports whether an activation function reads value, directly
// or after a bias Add.
func activated(m *graph.Model, value string) bool {
	for _, c := range m.Consumers(value) {
		if activationOps[c.OpType] {
			return true
		}
		if c.OpType == "Add" && len(c.Output) == 1 {
			for _, cc := range m.Consumers(c.Output[0]) {
				if activationOps[cc.OpType] {
					return true
				}
			}
		}
	}
	return false
}
