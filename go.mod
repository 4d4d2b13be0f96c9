module github.com/peftonnx/peftonnx

go 1.26.8

require (
	github.com/yalue/onnxruntime_go v1.27.0
	golang.org/x/text v0.25.0
	google.golang.org/protobuf v1.36.12
)
