// Package pb holds the protobuf messages of the ONNX file format, generated
// from onnx.proto. Only package onnx uses it; everything else goes through the
// graph IR.
//
// To regenerate after editing onnx.proto (needs protoc and protoc-gen-go):
//
//	apt-get install protobuf-compiler
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go generate ./onnx/internal/pb
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative onnx.proto
