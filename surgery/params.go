package surgery

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/graft-dev/graft/onnx"
)

// A Role says what a parameter is to the node that reads it.
type Role string

// Parameter roles.
const (
	Weight      Role = "weight"
	Bias        Role = "bias"
	Scale       Role = "scale" // BatchNormalization's gamma
	RunningMean Role = "running_mean"
	RunningVar  Role = "running_var"
	Other       Role = "other"
)

// A Param is one float initializer with what reads it.
type Param struct {
	Value *onnx.Value
	Name  string
	Op    string // op type of the first node that reads it
	Node  *onnx.Node
	Role  Role
	// InHead is true for the classifier head's weight and bias.
	InHead bool
}

// IsBuffer reports whether p is a statistic rather than a trainable
// parameter: BatchNormalization's running mean and variance.
func (p Param) IsBuffer() bool { return p.Role == RunningMean || p.Role == RunningVar }

// Params lists the model's float initializers in model order, with the op
// and role that read each.
func Params(m *onnx.Model) []Param {
	g := m.Graph
	head, _ := FindHead(g)
	headVals := map[*onnx.Value]bool{}
	if head != nil {
		headVals[head.Weight] = true
		if b := oldBias(head); b != nil {
			headVals[b] = true
		}
	}
	var out []Param
	for _, v := range g.Initializers {
		if v.Const.DType != onnx.Float && v.Const.DType != onnx.Double && v.Const.DType != onnx.Float16 {
			continue
		}
		p := Param{Value: v, Name: v.Name, Role: Other, InHead: headVals[v]}
		if cs := g.Consumers(v); len(cs) > 0 {
			p.Node, p.Op = cs[0], cs[0].OpType
			p.Role = roleOf(cs[0], v)
		}
		out = append(out, p)
	}
	return out
}

func roleOf(n *onnx.Node, v *onnx.Value) Role {
	idx := -1
	for i, x := range n.Inputs {
		if x == v {
			idx = i
			break
		}
	}
	switch n.OpType {
	case "Conv", "ConvTranspose", "Gemm":
		switch idx {
		case 1:
			return Weight
		case 2:
			return Bias
		}
	case "MatMul":
		if idx == 1 {
			return Weight
		}
	case "Add":
		return Bias
	case "BatchNormalization", "InstanceNormalization", "LayerNormalization":
		return []Role{Other, Scale, Bias, RunningMean, RunningVar}[min(max(idx, 0), 4)]
	}
	return Other
}

// A Selector picks parameters.
type Selector func(p Param) bool

// All selects every parameter.
func All() Selector { return func(Param) bool { return true } }

// Backbone selects everything but the classifier head.
func Backbone() Selector { return func(p Param) bool { return !p.InHead } }

// HeadParams selects the classifier head's weight and bias.
func HeadParams() Selector { return func(p Param) bool { return p.InHead } }

// Glob selects parameters whose name matches pattern, where * matches any
// run of characters (slashes and dots included) and ? any one character.
func Glob(pattern string) Selector {
	re := globRegexp(pattern)
	return func(p Param) bool { return re.MatchString(p.Name) }
}

// globRegexp compiles a glob in which * crosses "/" and ".": node names
// such as "/layer4/layer4.0/conv1/Conv" are paths, and "/layer4/*" should
// match everything under it.
func globRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// Prefix selects parameters whose name starts with prefix.
func Prefix(prefix string) Selector {
	return func(p Param) bool { return strings.HasPrefix(p.Name, prefix) }
}

// OpType selects parameters read by nodes of the given op type.
func OpType(op string) Selector { return func(p Param) bool { return p.Op == op } }

// ParseSelector reads the command line's selector syntax: "all",
// "backbone", "head", "op:TYPE", "prefix:P", or a glob over names.
func ParseSelector(s string) (Selector, error) {
	switch {
	case s == "":
		return nil, fmt.Errorf("empty selector")
	case s == "all":
		return All(), nil
	case s == "backbone":
		return Backbone(), nil
	case s == "head":
		return HeadParams(), nil
	case strings.HasPrefix(s, "op:"):
		return OpType(strings.TrimPrefix(s, "op:")), nil
	case strings.HasPrefix(s, "prefix:"):
		return Prefix(strings.TrimPrefix(s, "prefix:")), nil
	}
	return Glob(s), nil
}

// TrainableKey is the metadata_props key holding the trainable set, a JSON
// list of initializer names, so fine-tuning and inspect know it.
const TrainableKey = "graft.trainable"

// Trainable returns the names of the trainable parameters: the set stored
// in the model, or, if none is stored, every parameter but BatchNormalization
// statistics.
func Trainable(m *onnx.Model) ([]string, error) {
	if s, ok := m.MetadataValue(TrainableKey); ok {
		var names []string
		if err := json.Unmarshal([]byte(s), &names); err != nil {
			return nil, fmt.Errorf("metadata %s is not a JSON list of names: %w", TrainableKey, err)
		}
		have := map[string]bool{}
		for _, p := range Params(m) {
			have[p.Name] = true
		}
		for _, n := range names {
			if !have[n] {
				return nil, fmt.Errorf("metadata %s names %q, which is not a parameter of the model", TrainableKey, n)
			}
		}
		return names, nil
	}
	var names []string
	for _, p := range Params(m) {
		if !p.IsBuffer() {
			names = append(names, p.Name)
		}
	}
	return names, nil
}

// SetTrainable stores the trainable set in the model, in model order.
func SetTrainable(m *onnx.Model, names []string) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	ordered := []string{}
	for _, p := range Params(m) {
		if want[p.Name] && !p.IsBuffer() {
			ordered = append(ordered, p.Name)
		}
	}
	b, _ := json.Marshal(ordered)
	m.SetMetadata(TrainableKey, string(b))
}

// Freeze returns an edit that removes the selected parameters from the
// trainable set. It fails if the selector matches nothing, which is almost
// always a typo.
func Freeze(sel Selector) Edit { return changeTrainable(sel, false) }

// Unfreeze returns an edit that adds the selected parameters (never
// BatchNormalization statistics) to the trainable set.
func Unfreeze(sel Selector) Edit { return changeTrainable(sel, true) }

func changeTrainable(sel Selector, on bool) Edit {
	return func(m *onnx.Model) error {
		cur, err := Trainable(m)
		if err != nil {
			return err
		}
		set := map[string]bool{}
		for _, n := range cur {
			set[n] = true
		}
		matched := 0
		for _, p := range Params(m) {
			if sel(p) {
				matched++
				set[p.Name] = on && !p.IsBuffer()
			}
		}
		if matched == 0 {
			return fmt.Errorf("the selector matches no parameter")
		}
		var names []string
		for n, ok := range set {
			if ok {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		SetTrainable(m, names)
		return nil
	}
}
