package data

import (
	"fmt"

	"gorgonia.org/tensor"
)

// A Tensor is an image as float32 values in channel, row, column order.
type Tensor struct {
	C, H, W int
	Data    []float32 // Data[(c*H+y)*W+x]
}

// ToTensor converts to [0,1] floats in CHW order, sample/255, like
// torchvision.transforms.ToTensor.
func ToTensor(im *Image) *Tensor {
	t := &Tensor{C: im.Channels, H: im.Height, W: im.Width, Data: make([]float32, len(im.Pix))}
	n := im.Width * im.Height
	for i := 0; i < n; i++ {
		for c := 0; c < im.Channels; c++ {
			t.Data[c*n+i] = float32(im.Pix[i*im.Channels+c]) / 255
		}
	}
	return t
}

// Normalize replaces each value x of channel c by (x - mean[c]) / std[c] in
// float32, like torchvision.transforms.Normalize. A single mean or std
// value applies to every channel.
func (t *Tensor) Normalize(mean, std []float32) error {
	m, err := perChannel("mean", mean, t.C)
	if err != nil {
		return err
	}
	s, err := perChannel("std", std, t.C)
	if err != nil {
		return err
	}
	for c := range t.C {
		if s[c] == 0 {
			return fmt.Errorf("normalize: std of channel %d is 0", c)
		}
	}
	n := t.H * t.W
	for c := range t.C {
		d := t.Data[c*n : (c+1)*n]
		for i, x := range d {
			d[i] = (x - m[c]) / s[c]
		}
	}
	return nil
}

func perChannel(what string, v []float32, c int) ([]float32, error) {
	switch len(v) {
	case c:
		return v, nil
	case 1:
		out := make([]float32, c)
		for i := range out {
			out[i] = v[0]
		}
		return out, nil
	}
	return nil, fmt.Errorf("normalize: %d %s values for %d channels", len(v), what, c)
}

// A Pipeline is a whole preprocessing: convert to Channels (when not 0),
// apply Transform (when not nil), ToTensor, then Normalize with Mean and Std
// (when not nil).
type Pipeline struct {
	Channels  int
	Transform Transform
	Mean, Std []float32
}

// Apply preprocesses one decoded image.
func (p *Pipeline) Apply(im *Image) (*Tensor, error) {
	if p.Channels != 0 {
		var err error
		if im, err = Channels(p.Channels)(im); err != nil {
			return nil, err
		}
	}
	if p.Transform != nil {
		var err error
		if im, err = p.Transform(im); err != nil {
			return nil, err
		}
	}
	t := ToTensor(im)
	if p.Mean != nil || p.Std != nil {
		mean, std := p.Mean, p.Std
		if mean == nil {
			mean = []float32{0}
		}
		if std == nil {
			std = []float32{1}
		}
		if err := t.Normalize(mean, std); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Load reads and preprocesses one image file. Errors are *Error values
// naming the file.
func (p *Pipeline) Load(path string) (*Tensor, error) {
	im, err := Load(path)
	if err != nil {
		return nil, err
	}
	t, err := p.Apply(im)
	if err != nil {
		return nil, &Error{File: path, Err: err}
	}
	return t, nil
}

// Batch loads and preprocesses the files into one [N, C, H, W] float32
// tensor. All must come out the same size (use a crop).
func (p *Pipeline) Batch(paths []string) (*tensor.Dense, error) {
	var ts []*Tensor
	for _, path := range paths {
		t, err := p.Load(path)
		if err != nil {
			return nil, err
		}
		if len(ts) > 0 && (t.C != ts[0].C || t.H != ts[0].H || t.W != ts[0].W) {
			return nil, &Error{File: path, Err: fmt.Errorf("preprocessed to %dx%dx%d, unlike %s (%dx%dx%d): a batch needs one size",
				t.C, t.H, t.W, paths[0], ts[0].C, ts[0].H, ts[0].W)}
		}
		ts = append(ts, t)
	}
	return Stack(ts)
}

// Stack joins same-sized tensors into one [N, C, H, W] tensor.
func Stack(ts []*Tensor) (*tensor.Dense, error) {
	if len(ts) == 0 {
		return nil, fmt.Errorf("stack: no images")
	}
	c, h, w := ts[0].C, ts[0].H, ts[0].W
	data := make([]float32, 0, len(ts)*c*h*w)
	for i, t := range ts {
		if t.C != c || t.H != h || t.W != w {
			return nil, fmt.Errorf("stack: image %d is %dx%dx%d, image 0 is %dx%dx%d", i, t.C, t.H, t.W, c, h, w)
		}
		data = append(data, t.Data...)
	}
	return tensor.New(tensor.WithShape(len(ts), c, h, w), tensor.WithBacking(data)), nil
}
