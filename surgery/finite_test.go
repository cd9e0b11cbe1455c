package surgery

import (
	"math"
	"testing"
)

// NaN and infinities are refused where they enter: the --init syntax,
// rules drawing them, and Normalize.
func TestNonFiniteNumbersRefused(t *testing.T) {
	for _, c := range []struct{ init, err string }{
		{"normal:NaN,1", `--init "normal:NaN,1": the mean is NaN, want a finite number`},
		{"normal:0,Inf", `--init "normal:0,Inf": the std is +Inf, want a finite number`},
		{"normal:0,-1", `--init "normal:0,-1": the std is -1, want one of at least 0`},
		{"constant:Inf", `--init "constant:Inf": the value is +Inf, want a finite number`},
		{"constant:-inf", `--init "constant:-inf": the value is -Inf, want a finite number`},
		{"uniform:0,Inf", `--init "uniform:0,Inf": the high is +Inf, want a finite number`},
		{"uniform:nan,1", `--init "uniform:nan,1": the low is NaN, want a finite number`},
		{"uniform:1,0", `--init "uniform:1,0": the low end 1 is above the high end 0`},
		{"constant:1e400", `--init "constant:1e400": "1e400" is out of range`},
		{"constant:x", `--init "constant:x": "x" is not a number`},
		{"constant:1,NaN", `--init "constant:1,NaN": a number is NaN, want a finite number`},
		{"normal:1", `--init "normal:1": normal takes 2 numbers`},
	} {
		if _, err := ParseInit(c.init); err == nil || err.Error() != c.err {
			t.Errorf("ParseInit(%q): %v, want %s", c.init, err, c.err)
		}
	}
	for _, ok := range []string{"normal:0,0.02", "uniform:-1,1", "constant:0", "uniform:2,2"} {
		if _, err := ParseInit(ok); err != nil {
			t.Errorf("ParseInit(%q): %v", ok, err)
		}
	}

	m := load(t, "../testdata/models/cnn/model.onnx")
	before := encode(t, m)
	for _, c := range []struct {
		init Init
		err  string
	}{
		{Constant{1e39}, `surgery: edit 1 of 1: initialise "conv1.weight": constant(1e+39) draws +Inf (element 0)`},
		{Normal{math.NaN(), 1}, `surgery: edit 1 of 1: initialise "conv1.weight": normal(NaN, 1) draws NaN (element 0)`},
		{XavierUniform{Gain: math.Inf(1)}, `surgery: edit 1 of 1: initialise "conv1.weight": xavier_uniform(gain +Inf) draws NaN (element 0)`},
	} {
		if err := Apply(m, Initialize([]Rule{{Init: c.init}}, All(), 1)); err == nil || err.Error() != c.err {
			t.Errorf("Initialize(%v): %v, want %s", c.init, err, c.err)
		}
	}
	if string(before) != string(encode(t, m)) {
		t.Error("a refused initialisation changed the model")
	}

	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, c := range []struct {
		mean, std []float32
		err       string
	}{
		{[]float32{nan}, []float32{1}, "mean[0] is NaN, want a finite number"},
		{[]float32{-inf}, []float32{1}, "mean[0] is -Inf, want a finite number"},
		{[]float32{0.5}, []float32{nan}, "std[0] is NaN, want a finite number other than 0"},
		{[]float32{0.5}, []float32{inf}, "std[0] is +Inf, want a finite number other than 0"},
		{[]float32{0.5}, []float32{0}, "std[0] is 0, want a finite number other than 0"},
	} {
		err := Apply(m, Normalize("input", c.mean, c.std))
		if want := "surgery: edit 1 of 1: normalize: " + c.err; err == nil || err.Error() != want {
			t.Errorf("Normalize(%v, %v): %v, want %s", c.mean, c.std, err, want)
		}
	}
}
