package feed

import (
	"regexp"
	"strings"
)

// Role says what an input is for.
type Role int

// The roles. Unknown inputs are fed only from the caller's data.
const (
	Unknown Role = iota
	// TokenIDs are the token ids, [batch, sequence].
	TokenIDs
	// AttentionMask is 1 for each token to attend to and 0 for padding,
	// [batch, past+sequence].
	AttentionMask
	// TokenTypes are BERT's segment ids, [batch, sequence].
	TokenTypes
	// Positions are position ids, [batch, sequence].
	Positions
	// Cache is a self-attention key/value cache that grows by the run's
	// tokens along its length axis.
	Cache
	// CrossCache is a cross-attention cache: the encoder's keys or values,
	// which the caller gives.
	CrossCache
	// State is a recurrent or convolution state: a past input without a
	// past-length dimension, the same shape on every run.
	State
)

// String names the role in messages.
func (r Role) String() string {
	switch r {
	case TokenIDs:
		return "token ids"
	case AttentionMask:
		return "attention mask"
	case TokenTypes:
		return "token types"
	case Positions:
		return "positions"
	case Cache:
		return "KV cache"
	case CrossCache:
		return "cross-attention cache"
	case State:
		return "state"
	}
	return "unknown"
}

// Carried reports whether a run returns the role's next value, which the
// next run is fed: caches and states.
func (r Role) Carried() bool { return r == Cache || r == State }

// roleNames lists the input names of each plain role, normalized (see
// normalize). The first of each list is the canonical name, which a data
// field may also use for an input of another name.
var roleNames = map[Role][]string{
	TokenIDs:      {"input_ids", "input_word_ids", "token_ids", "decoder_input_ids", "ids", "tokens", "input_tokens"},
	AttentionMask: {"attention_mask", "input_mask", "attn_mask", "mask", "decoder_attention_mask"},
	TokenTypes:    {"token_type_ids", "segment_ids", "input_type_ids", "token_types", "type_ids"},
	Positions:     {"position_ids", "positions", "pos_ids", "position"},
}

// CanonicalName returns the name that HuggingFace gives an input of the
// role (input_ids, attention_mask, token_type_ids, position_ids), or ""
// for the other roles.
func (r Role) CanonicalName() string {
	if names := roleNames[r]; len(names) > 0 {
		return names[0]
	}
	return ""
}

// tfSuffix is the output index that TensorFlow exports append to names.
var tfSuffix = regexp.MustCompile(`:\d+$`)

// normalize lowers name and drops a TensorFlow ":0" suffix.
func normalize(name string) string {
	return strings.ToLower(tfSuffix.ReplaceAllString(name, ""))
}

// plainRole returns the role that name gives an input of ids, masks,
// token types or positions, or Unknown.
func plainRole(name string) Role {
	n := normalize(name)
	for _, r := range []Role{TokenIDs, AttentionMask, TokenTypes, Positions} {
		for _, alias := range roleNames[r] {
			if n == alias {
				return r
			}
		}
	}
	return Unknown
}
