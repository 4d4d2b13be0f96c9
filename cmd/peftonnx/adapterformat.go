package main

import (
	"github.com/peftonnx/peftonnx/adapter"
)

// The adapter layouts that train and export-adapter write.
const (
	formatHF          = "hf"           // HuggingFace PEFT directory
	formatPaddle      = "paddle"       // PaddleNLP directory (save_pretrained)
	formatONNXAdapter = "onnx_adapter" // ONNX Runtime adapter file (export-adapter and combine)
)

// saveAdapterDir writes ad to dir in the directory layout format (hf or
// paddle) and names that layout and its files for messages: "HF PEFT
// directory", "adapter_config.json, adapter_model.safetensors".
func saveAdapterDir(dir string, ad *adapter.Adapter, format string) (what, files string, err error) {
	if format == formatPaddle {
		files = adapter.PaddleLoRAConfigFile + ", " + adapter.PaddleLoRAWeightsFile
		if ad.Prefix != nil {
			files = adapter.PaddlePrefixConfigFile + ", " + adapter.PaddlePrefixWeightsFile + ", " + adapter.PaddlePreCachesFile
		}
		return "PaddleNLP directory", files, adapter.SavePaddleDir(dir, ad)
	}
	return "HF PEFT directory", adapter.HFConfigFile + ", " + adapter.HFWeightsFile, adapter.SaveDir(dir, ad)
}
