// Package onnx reads, edits and writes ONNX models.
//
// # Overview
//
// Load, Decode and DecodeOptions read a model file into a Model: a Graph of
// Nodes connected by Values. A Value is a graph input, a node output or a
// constant (an initializer, its Tensor in Const); nodes hold their inputs
// and outputs as *Value, so renaming a value renames it everywhere. Save
// validates and writes a model by graft's rule for outputs (atomically, never
// over a device or a read-only file unless forced; see internal/fileio), its
// external data in one file named after the output and its content, which
// no other model can be reading; Encode returns the bytes.
// ExternalDataFiles lists the data files a model was read from.
//
// An unedited model encodes to the bytes it was read from: the schema
// behind the codec (internal/pb) is proto2 like ONNX's own, and every field
// the IR does not model is carried through.
//
// Graph editing: AddNode, InsertNode, RemoveNode, ReplaceUses,
// AddInitializer, AddInput; Value, Node and Consumers look things up;
// TopoSort orders nodes and Cleanup drops what no output depends on.
// Model.Validate names every problem it finds (undefined inputs, cycles,
// duplicate names, tensors whose data does not fit their shape), and
// Model.InferShapes types node outputs, symbolic dimensions included. Clone
// makes a deep copy.
//
// Tensors keep their data as little-endian bytes; FromFloat32, FromInt64
// and NewTensor make them, Float32s, Float64s and Int64s read them, and
// LoadTensor and SaveTensor read and write single TensorProto files such as
// the ONNX test data's input_0.pb.
//
// Bad input is an error, never a panic: a file that is not a model wraps
// ErrNotONNX, an invalid graph is a *ValidationError, and external data
// leading out of the model's folder wraps ErrUnsafeLocation. Sizes are
// checked against the bytes present before anything is allocated.
package onnx
