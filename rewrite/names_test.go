package rewrite

import "testing"

// TestTFModuleNames checks the names of TF and Keras exports and of
// weights without a ".weight" segment.
func TestTFModuleNames(t *testing.T) {
	nodes := []struct{ name, want string }{
		{"bert/encoder/layer_0/attention/self/query/MatMul", "bert.encoder.layer_0.attention.self.query"},
		{"tf_bert_model/bert/encoder/layer_._0/attention/self/query/Tensordot/MatMul", "tf_bert_model.bert.encoder.layer.0.attention.self.query"},
		{"StatefulPartitionedCall/tf_bert_model/bert/encoder/layer_._11/output/dense/Tensordot/MatMul", "tf_bert_model.bert.encoder.layer.11.output.dense"},
		{"dense_1/MatMul", "dense_1"},
		{"/model/layers.0/self_attn/q_proj/MatMul", "model.layers.0.self_attn.q_proj"},
	}
	for i, tc := range nodes {
		if got := nodePathModule(tc.name); got != tc.want {
			t.Errorf("node %d %q: got %q want %q", i, tc.name, got, tc.want)
		}
	}
	weights := []struct{ name, want string }{
		{"bert/encoder/layer_0/attention/self/query/kernel:0", "bert.encoder.layer_0.attention.self.query"},
		{"bert/encoder/layer_0/attention/self/query/kernel/read:0", "bert.encoder.layer_0.attention.self.query"},
		{"tf_bert_model/bert/encoder/layer_._1/attention/self/key/Tensordot/ReadVariableOp:0", "tf_bert_model.bert.encoder.layer.1.attention.self.key"},
		{"l0.q.w", "l0.q"},
		{"lm_head_weight", "lm_head"},
		{"302", ""},
		{"onnx::MatMul_1234", ""},
		{"model/Constant_output_0", ""},
	}
	for i, tc := range weights {
		if got := pathParamModule(tc.name, kernelNames); got != tc.want {
			t.Errorf("weight %d %q: got %q want %q", i, tc.name, got, tc.want)
		}
	}
	if got := pathParamModule("bert/encoder/layer_0/attention/self/query/bias:0", biasNames); got != "bert.encoder.layer_0.attention.self.query" {
		t.Errorf("TF bias: got %q", got)
	}
}
