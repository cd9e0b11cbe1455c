package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/surgery"
)

func init() {
	register(&command{
		name:  "inspect",
		short: "show a model: inputs, outputs, contract, ops, parameters, head",
		args:  "MODEL.onnx [--json]",
		summary: "Print a model's inputs, outputs, ops, parameter count, classifier head and contract:\n" +
			"what it expects (layout, size, resize, normalisation or \"normalised inside\") and\n" +
			"what it outputs (logits, log-probabilities or probabilities; class names), as graft\n" +
			"run, finetune and robustness feed and read it.",
		run: runInspect,
	})
}

// Report is what graft inspect prints.
type Report struct {
	File           string         `json:"file"`
	IRVersion      int64          `json:"ir_version"`
	Opsets         []OpsetInfo    `json:"opsets"`
	Producer       string         `json:"producer"`
	GraphName      string         `json:"graph_name"`
	Inputs         []TensorInfo   `json:"inputs"`
	Outputs        []TensorInfo   `json:"outputs"`
	Nodes          int            `json:"nodes"`
	Ops            map[string]int `json:"ops"`
	Initializers   int            `json:"initializers"`
	Parameters     int64          `json:"parameters"`
	ParameterBytes int64          `json:"parameter_bytes"`
	Head           *HeadInfo      `json:"head"`
	HeadError      string         `json:"head_error,omitempty"`
	// Trainable lists the parameters fine-tuning updates, when the model
	// stores a trainable set (graft surgery --freeze).
	Trainable []string          `json:"trainable,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	// Contract is what the model expects and outputs (contract.Derive);
	// ContractError says why there is none.
	Contract      *contract.Contract `json:"contract,omitempty"`
	ContractError string             `json:"contract_error,omitempty"`
	// Memory is what running the model on one image takes (see
	// runtime.Estimate), in bytes; 0 when the input is not images or the
	// model does not compile.
	Memory int64 `json:"memory_one_image,omitempty"`
}

// OpsetInfo is one opset import.
type OpsetInfo struct {
	Domain  string `json:"domain"`
	Version int64  `json:"version"`
}

// TensorInfo describes a graph input or output. Symbolic dims appear by name.
type TensorInfo struct {
	Name  string   `json:"name"`
	DType string   `json:"dtype"`
	Shape []string `json:"shape"`
}

// HeadInfo describes the classifier head.
type HeadInfo struct {
	Node        string `json:"node"`
	Op          string `json:"op"`
	InFeatures  int64  `json:"in_features"`
	OutFeatures int64  `json:"out_features"`
}

func runInspect(args []string, stdout io.Writer) error {
	c := lookup("inspect")
	fs := newFlags(c, stdout)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usage("want exactly one model file, got %d arguments", len(pos))
	}
	m, err := onnx.Load(pos[0])
	if err != nil {
		return err
	}
	r := inspect(pos[0], m)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printReport(stdout, r)
	return nil
}

func inspect(path string, m *onnx.Model) *Report {
	r := &Report{
		File:      path,
		IRVersion: m.IRVersion,
		Producer:  strings.TrimSpace(m.ProducerName + " " + m.ProducerVersion),
		GraphName: m.Graph.Name,
		Nodes:     len(m.Graph.Nodes),
		Ops:       map[string]int{},
	}
	for _, o := range m.Opsets {
		d := o.Domain
		if d == "" {
			d = "ai.onnx"
		}
		r.Opsets = append(r.Opsets, OpsetInfo{d, o.Version})
	}
	for _, v := range m.Graph.Inputs {
		if !v.IsConst() {
			r.Inputs = append(r.Inputs, tensorInfo(v))
		}
	}
	for _, v := range m.Graph.Outputs {
		r.Outputs = append(r.Outputs, tensorInfo(v))
	}
	for _, n := range m.Graph.Nodes {
		r.Ops[n.OpType]++
	}
	for _, v := range m.Graph.Initializers {
		r.Initializers++
		r.Parameters += v.Const.NumElements()
		r.ParameterBytes += v.Const.Bytes()
	}
	if h, err := surgery.FindHead(m.Graph); err == nil {
		r.Head = &HeadInfo{Node: h.Node.Name, Op: h.Node.OpType, InFeatures: h.InFeatures, OutFeatures: h.OutFeatures}
	} else {
		r.HeadError = err.Error()
	}
	if _, ok := m.MetadataValue(surgery.TrainableKey); ok {
		if names, err := surgery.Trainable(m); err == nil {
			r.Trainable = names
		}
	}
	if c, err := contract.Derive(m); err == nil {
		r.Contract = c
		if c.Input.Layout == contract.NCHW {
			if est, err := runtime.Estimate(m, runtime.Options{}, runtime.Plan{Inputs: [][]int{{1, c.Input.Channels, c.Input.Height, c.Input.Width}}}); err == nil {
				r.Memory = est.Total
			}
		}
	} else {
		r.ContractError = err.Error()
	}
	for _, p := range m.Metadata {
		if p.Key == surgery.TrainableKey || p.Key == contract.Key {
			continue
		}
		if r.Metadata == nil {
			r.Metadata = map[string]string{}
		}
		r.Metadata[p.Key] = p.Value
	}
	return r
}

// typeString is "float32[batch,3,224,224]", or "float32, shape unknown"
// for a value that declares no shape.
func (t TensorInfo) typeString() string {
	if t.Shape == nil {
		return t.DType + ", shape unknown"
	}
	return t.DType + "[" + strings.Join(t.Shape, ",") + "]"
}

func tensorInfo(v *onnx.Value) TensorInfo {
	ti := TensorInfo{Name: v.Name, DType: "unknown"}
	if v.Type != nil {
		ti.DType = v.Type.Elem.String()
		if v.Type.Shape == nil {
			ti.Shape = nil
		}
		for _, d := range v.Type.Shape {
			ti.Shape = append(ti.Shape, d.String())
		}
	}
	return ti
}

func printReport(w io.Writer, r *Report) {
	fmt.Fprintf(w, "model:       %s\n", r.File)
	var ops []string
	for _, o := range r.Opsets {
		ops = append(ops, fmt.Sprintf("%s %d", o.Domain, o.Version))
	}
	fmt.Fprintf(w, "ir version:  %d; opsets: %s\n", r.IRVersion, strings.Join(ops, ", "))
	if r.Producer != "" {
		fmt.Fprintf(w, "producer:    %s\n", r.Producer)
	}
	for _, t := range r.Inputs {
		fmt.Fprintf(w, "input:       %s %s\n", t.Name, t.typeString())
	}
	for _, t := range r.Outputs {
		fmt.Fprintf(w, "output:      %s %s\n", t.Name, t.typeString())
	}
	fmt.Fprintf(w, "parameters:  %d in %d initializers (%s)\n", r.Parameters, r.Initializers, humanBytes(r.ParameterBytes))
	if r.Memory > 0 {
		fmt.Fprintf(w, "memory:      %s to run on one image\n", humanBytes(r.Memory))
	}
	if r.Head != nil {
		fmt.Fprintf(w, "head:        %s (%s) %d -> %d\n", r.Head.Node, r.Head.Op, r.Head.InFeatures, r.Head.OutFeatures)
	} else {
		fmt.Fprintf(w, "head:        none: %s\n", r.HeadError)
	}
	if r.Trainable != nil {
		list := r.Trainable
		more := ""
		if len(list) > 6 {
			list, more = list[:6], fmt.Sprintf(", and %d more", len(r.Trainable)-6)
		}
		fmt.Fprintf(w, "trainable:   %d parameter tensors: %s%s\n", len(r.Trainable), strings.Join(list, ", "), more)
	}
	printContract(w, r)
	for _, k := range sortedKeys(r.Metadata) {
		fmt.Fprintf(w, "metadata:    %s = %s\n", k, r.Metadata[k])
	}
	fmt.Fprintf(w, "nodes:       %d\n", r.Nodes)
	type kv struct {
		op string
		n  int
	}
	var hist []kv
	for op, n := range r.Ops {
		hist = append(hist, kv{op, n})
	}
	sort.Slice(hist, func(i, j int) bool {
		if hist[i].n != hist[j].n {
			return hist[i].n > hist[j].n
		}
		return hist[i].op < hist[j].op
	})
	for _, h := range hist {
		fmt.Fprintf(w, "  %-24s %d\n", h.op, h.n)
	}
}

func printContract(w io.Writer, r *Report) {
	c := r.Contract
	if c == nil {
		fmt.Fprintf(w, "contract:    none: %s\n", r.ContractError)
		return
	}
	from := "derived from the graph and defaults (see the notes)"
	if c.Stored {
		from = "stored by graft"
	}
	fmt.Fprintf(w, "contract:    %s\n", from)
	in := c.Input
	switch in.Layout {
	case contract.NCHW:
		norm := fmt.Sprintf("normalised with mean %v std %v", in.Mean, in.Std)
		switch {
		case in.NormalizedInside:
			norm = fmt.Sprintf("normalised inside the model (mean %v std %v)", in.Mean, in.Std)
		case len(in.Mean) == 0:
			norm = "no normalisation"
		}
		pixels := "pixels in [0, 1]"
		if in.PixelScale != 1 {
			pixels = fmt.Sprintf("pixels in [0, %g]", in.PixelScale)
		}
		fmt.Fprintf(w, "  expects:   %q: NCHW images, %s, %dx%d (resize %d, center crop), %s, %s\n",
			in.Name, channels(in.Channels), in.Width, in.Height, in.Resize, pixels, norm)
	case contract.NHWC:
		fmt.Fprintf(w, "  expects:   %q: NHWC (channels last) images, %s, %dx%d: graft feeds NCHW only\n", in.Name, channels(in.Channels), in.Width, in.Height)
	default:
		fmt.Fprintf(w, "  expects:   %q: not a batch of images (tensor files only)\n", in.Name)
	}
	out := c.Output
	kind := strings.ReplaceAll(string(out.Kind), "_", "-")
	if out.Activation != "" {
		kind += fmt.Sprintf(" (a final %s)", out.Activation)
	}
	classes := "classes not fixed"
	if out.NumClasses > 0 {
		classes = fmt.Sprintf("%d classes", out.NumClasses)
	}
	if out.Classes != nil {
		classes += ": " + strings.Join(out.Classes, ", ")
	}
	fmt.Fprintf(w, "  outputs:   %q: %s, %s\n", out.Name, kind, classes)
	for _, n := range c.Notes {
		fmt.Fprintf(w, "  note:      %s\n", n)
	}
	for _, n := range c.Warnings {
		fmt.Fprintf(w, "  warning:   %s\n", n)
	}
}

func channels(n int) string {
	switch n {
	case 1:
		return "1 channel (gray)"
	case 3:
		return "3 channels (RGB)"
	}
	return fmt.Sprintf("%d channels", n)
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
