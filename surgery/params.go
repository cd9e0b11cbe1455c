package surgery

import (
	"encoding/json"
	"fmt"
	"regexp"
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
	// Normalization is the mean or std Normalize puts in: a fixed part of
	// the model's interface, never trained.
	Normalization Role = "normalization"
	Other         Role = "other"
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

// IsBuffer reports whether p is a constant that never trains rather than a
// trainable parameter: BatchNormalization's running mean and variance (a
// statistic), or the mean and std Normalize puts in.
func (p Param) IsBuffer() bool {
	return p.Role == RunningMean || p.Role == RunningVar || p.Role == Normalization
}

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
	if n.Name == normalizeSubNode || n.Name == NormalizeNode {
		return Normalization
	}
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

// Glob selects parameters whose name matches pattern: * matches any run of
// characters (slashes and dots included), ? any one character, [abc] one
// of a set, [a-z] one of a range, [!abc] or [^abc] one not in the set, and
// a backslash makes the next character literal. A malformed pattern (an
// unclosed [) matches nothing; ParseSelector reports it.
func Glob(pattern string) Selector {
	re, err := globRegexp(pattern)
	if err != nil {
		return func(Param) bool { return false }
	}
	return func(p Param) bool { return re.MatchString(p.Name) }
}

// globRegexp compiles a glob in which * crosses "/" and ".": node names
// such as "/layer4/layer4.0/conv1/Conv" are paths, and "/layer4/*" should
// match everything under it.
func globRegexp(pattern string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	rs := []rune(pattern)
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '\\':
			if i+1 == len(rs) {
				return nil, fmt.Errorf("it ends in a lone \\")
			}
			i++
			b.WriteString(regexp.QuoteMeta(string(rs[i])))
		case '[':
			class, n, err := globClass(rs[i:])
			if err != nil {
				return nil, err
			}
			b.WriteString(class)
			i += n - 1
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// globClass translates the character class at the start of rs ("[...]")
// into a regexp class, returning it and the number of runes it took.
func globClass(rs []rune) (string, int, error) {
	var b strings.Builder
	b.WriteString("[")
	i := 1
	if i < len(rs) && (rs[i] == '!' || rs[i] == '^') {
		b.WriteString("^")
		i++
	}
	first := i
	for ; i < len(rs) && (rs[i] != ']' || i == first); i++ {
		lo := rs[i]
		if lo == '\\' && i+1 < len(rs) {
			i++
			lo = rs[i]
		}
		b.WriteString(classRune(lo))
		if i+2 < len(rs) && rs[i+1] == '-' && rs[i+2] != ']' {
			hi := rs[i+2]
			i += 2
			if hi == '\\' && i+1 < len(rs) {
				i++
				hi = rs[i]
			}
			if hi < lo {
				return "", 0, fmt.Errorf("the range %q runs backwards", string([]rune{lo, '-', hi}))
			}
			b.WriteString("-" + classRune(hi))
		}
	}
	if i == len(rs) {
		return "", 0, fmt.Errorf("%q is not closed by \"]\"", string(rs))
	}
	b.WriteString("]")
	return b.String(), i + 1, nil
}

// classRune writes r for a regexp class, where ], ^, - and \ would
// otherwise mean something.
func classRune(r rune) string { return fmt.Sprintf(`\x{%x}`, r) }

// Prefix selects parameters whose name starts with prefix.
func Prefix(prefix string) Selector {
	return func(p Param) bool { return strings.HasPrefix(p.Name, prefix) }
}

// OpType selects parameters read by nodes of the given op type.
func OpType(op string) Selector { return func(p Param) bool { return p.Op == op } }

// ParseSelector reads the command line's selector syntax: "all",
// "backbone", "head", "op:TYPE", "prefix:P", or a glob over names (see
// Glob). A malformed glob is an error saying why.
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
	case s == "op:":
		return nil, fmt.Errorf("selector %q names no op type (op:Conv, op:Gemm, ...)", s)
	case strings.HasPrefix(s, "op:"):
		return OpType(strings.TrimPrefix(s, "op:")), nil
	case s == "prefix:":
		return nil, fmt.Errorf("selector %q names no prefix", s)
	case strings.HasPrefix(s, "prefix:"):
		return Prefix(strings.TrimPrefix(s, "prefix:")), nil
	}
	if _, err := globRegexp(s); err != nil {
		return nil, fmt.Errorf("invalid pattern %q: %w", s, err)
	}
	return Glob(s), nil
}

// TrainableKey is the metadata_props key holding the trainable set, a JSON
// list of initializer names, so fine-tuning and inspect know it.
const TrainableKey = "graft.trainable"

// Trainable returns the names of the trainable parameters: the set stored
// in the model, or, if none is stored, every parameter but BatchNormalization
// statistics and the normalisation Normalize puts in. A stored set naming
// something that is not a parameter of the model is an error.
func Trainable(m *onnx.Model) ([]string, error) {
	names, stored, err := storedTrainable(m)
	if err != nil {
		return nil, err
	}
	if stored {
		have := map[string]bool{}
		for _, p := range Params(m) {
			have[p.Name] = true
		}
		for _, n := range names {
			if !have[n] {
				return nil, fmt.Errorf("the model's trainable set (metadata %s) names %q, which is not a parameter of the model; redo the surgery that stored it", TrainableKey, n)
			}
		}
		return names, nil
	}
	names = nil
	for _, p := range Params(m) {
		if !p.IsBuffer() {
			names = append(names, p.Name)
		}
	}
	return names, nil
}

// storedTrainable returns the trainable set stored in m, unchecked, and
// whether there is one.
func storedTrainable(m *onnx.Model) ([]string, bool, error) {
	s, ok := m.MetadataValue(TrainableKey)
	if !ok {
		return nil, false, nil
	}
	var names []string
	if err := json.Unmarshal([]byte(s), &names); err != nil {
		return nil, true, fmt.Errorf("metadata %s is not a JSON list of names: %w", TrainableKey, err)
	}
	return names, true, nil
}

// SetTrainable stores the trainable set in the model, in model order,
// leaving out buffers (see Param.IsBuffer), which never train. A name that
// is not a parameter of the model is an error, and the model is left
// unchanged.
func SetTrainable(m *onnx.Model, names []string) error {
	params := Params(m)
	have := map[string]bool{}
	for _, p := range params {
		have[p.Name] = true
	}
	want := map[string]bool{}
	for _, n := range names {
		if !have[n] {
			return fmt.Errorf("trainable set: %q is not a parameter of the model", n)
		}
		want[n] = true
	}
	ordered := []string{}
	for _, p := range params {
		if want[p.Name] && !p.IsBuffer() {
			ordered = append(ordered, p.Name)
		}
	}
	b, _ := json.Marshal(ordered)
	m.SetMetadata(TrainableKey, string(b))
	return nil
}

// keepTrainable rewrites a stored trainable set after Cleanup: names of
// parameters that were in before (the parameters before the cleanup) but
// are gone now (nothing reads them any more) leave the set; a name that
// was not a parameter even before is an error, since an edit broke the set.
func keepTrainable(m *onnx.Model, before map[string]bool) error {
	names, stored, err := storedTrainable(m)
	if err != nil || !stored {
		return err
	}
	have := map[string]bool{}
	for _, p := range Params(m) {
		have[p.Name] = true
	}
	var kept []string
	for _, n := range names {
		switch {
		case have[n]:
			kept = append(kept, n)
		case !before[n]:
			return fmt.Errorf("the trainable set names %q, which is not a parameter of the edited model", n)
		}
	}
	return SetTrainable(m, kept)
}

// Freeze returns an edit that removes the selected parameters from the
// trainable set. It fails if the selector matches nothing, which is almost
// always a typo. Selectors see the model as the edits before them left it:
// after ReplaceHead, "head" is the new head.
func Freeze(sel Selector) Edit { return changeTrainable(sel, false) }

// Unfreeze returns an edit that adds the selected parameters (never
// buffers, see Param.IsBuffer) to the trainable set.
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
		return SetTrainable(m, names)
	}
}
