package adapter

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
)

// An adapter directory is two files, adapter_config.json and
// adapter_model.safetensors, and no file system renames two files at once:
// a save killed between the renames, or two saves racing, can leave the
// config of one save beside the weights of another, which load and apply
// without complaint when only lora_alpha differs. So SaveDir records the
// SHA-256 of the weights file it writes in the config's "peftonnx"
// object, under weightsHashKey, and LoadDir refuses a config whose
// weights file does not hash to it. A config edited by hand keeps the
// hash and still loads; files that others wrote carry none and are not
// checked.

// weightsHashKey is the key of the "peftonnx" object of
// adapter_config.json that holds the hash of the weights saved with it.
const weightsHashKey = "weights_sha256"

// weightsHash is the value of weightsHashKey for a weights file.
func weightsHash(weights []byte) string {
	sum := sha256.Sum256(weights)
	return hex.EncodeToString(sum[:])
}

// checkWeightsHash verifies that the weights file at wpath is the one
// saved with the config at cfgPath, where the config says which.
func checkWeightsHash(cfgPath, wpath string) error {
	config, err := os.ReadFile(cfgPath)
	if err != nil {
		return errorf("%w", err)
	}
	var c struct {
		Extra struct {
			WeightsHash string `json:"weights_sha256"`
		} `json:"peftonnx"`
	}
	if json.Unmarshal(config, &c) != nil || c.Extra.WeightsHash == "" {
		return nil // malformed configs are reported by the config parser
	}
	weights, err := os.ReadFile(wpath)
	if err != nil {
		return errorf("%w", err)
	}
	if got := weightsHash(weights); got != c.Extra.WeightsHash {
		return formatErrorf(cfgPath, extraKey+"."+weightsHashKey, "%s is not the weights file saved with this config (it hashes to %.12s…, the config records %.12s…): a save was interrupted or two ran at once; save the adapter again", wpath, got, c.Extra.WeightsHash)
	}
	return nil
}
