package adapter

// This file maps configs to PaddleNLP's lora_config.json and
// prefix_config.json (LoRAConfig.save_pretrained and
// PrefixConfig.save_pretrained: json.dumps of the dataclass, sorted keys,
// indent 2). Fields PaddleNLP has no key for go in a nested "peftonnx"
// object, which PaddleNLP's from_pretrained ignores (it sets only the
// attributes its dataclass has).

// paddleLoRAConfigJSON returns the lora_config.json of c, saved with
// tensor_parallel_degree tpDegree.
func paddleLoRAConfigJSON(c *LoRAConfig, tpDegree int, weightsHash string) ([]byte, error) {
	for _, f := range []struct {
		key string
		set bool
	}{
		{"rank_pattern", len(c.RankPattern) > 0},
		{"alpha_pattern", len(c.AlphaPattern) > 0},
		{"layers_to_transform", len(c.LayersToTransform) > 0},
		{"layers_pattern", len(c.LayersPattern) > 0},
		{"exclude_modules", len(c.ExcludeModules) > 0},
	} {
		if f.set {
			return nil, formatErrorf(PaddleLoRAConfigFile, f.key, "PaddleNLP's LoRAConfig has no such field: save in the HuggingFace layout (SaveDir)")
		}
	}
	var bias, headDim any
	if c.TrainableBias != "" && c.TrainableBias != BiasNone {
		bias = string(c.TrainableBias)
	}
	if c.HeadDim != 0 {
		headDim = c.HeadDim
	}
	var trainable any
	if len(c.TrainableModules) > 0 {
		trainable = c.TrainableModules
	}
	m := map[string]any{
		"r":                       c.R,
		"target_modules":          c.TargetModules,
		"trainable_modules":       trainable,
		"lora_alpha":              c.Alpha,
		"lora_dropout":            c.Dropout,
		"merge_weights":           c.MergeWeights,
		"trainable_bias":          bias,
		"enable_lora_list":        c.EnableLoRAList,
		"tensor_parallel_degree":  tpDegree,
		"dtype":                   storedAs(c.DType),
		"head_dim":                headDim,
		"do_qat":                  c.DoQAT,
		"rslora":                  c.UseRSLoRA,
		"lora_plus_scale":         orDefault(c.LoRAPlusScale, 1),
		"base_model_name_or_path": nullIfEmpty(c.BaseModelName),
		"use_quick_lora":          c.UseQuickLoRA,
		"scaling":                 c.Scaling(),
		extraKey: map[string]any{
			"task_type":         c.TaskType,
			"init_lora_weights": string(orDefault(c.InitLoRAWeights, InitKaiming)),
			"fan_in_fan_out":    c.FanInFanOut,
			"inference_mode":    c.InferenceMode,
			"revision":          c.Revision,
		},
	}
	return marshalConfig(m, weightsHash)
}

// paddlePrefixConfigJSON returns the prefix_config.json of c.
func paddlePrefixConfigJSON(c *PrefixConfig, weightsHash string) ([]byte, error) {
	var groups, projHidden any
	if c.MultiQueryGroupNum != 0 {
		groups = c.MultiQueryGroupNum
	}
	if c.PrefixProjectionHiddenSize != 0 {
		projHidden = c.PrefixProjectionHiddenSize
	}
	m := map[string]any{
		"prefix_dropout":                c.PrefixDropout,
		"num_prefix_tokens":             c.NumPrefixTokens,
		"num_attention_heads":           c.NumAttentionHeads,
		"multi_query_group_num":         groups,
		"num_hidden_layers":             c.NumHiddenLayers,
		"hidden_size":                   c.HiddenSize,
		"prefix_projection":             c.PrefixProjection,
		"prefix_projection_hidden_size": projHidden,
		"tensor_parallel_degree":        paddleTPDegree(c.TensorParallelDegree),
		"dtype":                         storedAs(c.DType),
		extraKey: map[string]any{
			"task_type":               c.TaskType,
			"base_model_name_or_path": c.BaseModelName,
			"inference_mode":          c.InferenceMode,
			"revision":                c.Revision,
		},
	}
	return marshalConfig(m, weightsHash)
}

// paddleLoRAExtraFields reads the nested "peftonnx" object of a PaddleNLP
// LoRA config into c.
func paddleLoRAExtraFields(f *jsonFields, c *LoRAConfig) error {
	x, err := f.sub(extraKey)
	if err != nil || x == nil {
		return err
	}
	var init string
	err = firstErr(
		x.stringField("task_type", &c.TaskType),
		x.stringField("init_lora_weights", &init),
		x.boolField("fan_in_fan_out", &c.FanInFanOut),
		x.boolField("inference_mode", &c.InferenceMode),
		x.stringField("revision", &c.Revision),
	)
	c.InitLoRAWeights = orDefault(LoRAInit(init), c.InitLoRAWeights)
	return err
}

// paddlePrefixExtraFields reads the nested "peftonnx" object of a
// PaddleNLP prefix config into c.
func paddlePrefixExtraFields(f *jsonFields, c *PrefixConfig) error {
	x, err := f.sub(extraKey)
	if err != nil || x == nil {
		return err
	}
	return firstErr(
		x.stringField("task_type", &c.TaskType),
		x.stringField("base_model_name_or_path", &c.BaseModelName),
		x.boolField("inference_mode", &c.InferenceMode),
		x.stringField("revision", &c.Revision),
	)
}
