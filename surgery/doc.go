// Package surgery edits ONNX models for transfer learning: it finds the
// classifier head, and (in later work) replaces it, freezes parameters and
// initialises weights. It works on the graph IR of package onnx.
package surgery
