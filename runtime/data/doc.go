// Package data turns image files into the float32 tensors a vision model
// expects, the way torchvision does it on PIL images, so that a model
// exported from PyTorch sees the same numbers in graft as in Python.
//
// Decoding: Load and Decode read PNG, JPEG and GIF (first frame) into an
// 8-bit Image with 1 (gray) or 3 (RGB) channels; alpha is dropped as PIL's
// convert("RGB") does. JPEGs are decoded by this package the way libjpeg
// (which PIL uses) does by default: Huffman baseline and progressive files,
// the "islow" integer inverse DCT, "fancy" triangle upsampling of subsampled
// chroma, libjpeg's color tables and its color-space guess (JFIF means
// YCbCr), PIL's CMYK conversion; the pixels equal PIL's. Rarer flavours
// (arithmetic coding, 12-bit) go to the standard library's decoder. The
// size declared in the header is checked against MaxPixels before any
// pixel is decoded. Every failure is an *Error naming the file.
//
// Transforms work on 8-bit images, like torchvision's on PIL images, and
// compose with Compose:
//
//	Resize(256)           shorter side to 256, PIL's antialiased bilinear
//	CenterCrop(224)       torchvision's rounding of the offset; pads if small
//	Channels(3)           PIL "L" conversion, or gray replicated to RGB
//	RandomResizedCrop(224, rng), RandomHorizontalFlip(rng)   for training
//
// ToTensor scales to [0,1] in CHW order and Tensor.Normalize subtracts the
// mean and divides by the standard deviation per channel, in float32 as
// torch does. A Pipeline bundles the three steps:
//
//	p := &data.Pipeline{Channels: 3, Transform: data.Compose(data.Resize(256), data.CenterCrop(224)),
//		Mean: []float32{0.485, 0.456, 0.406}, Std: []float32{0.229, 0.224, 0.225}}
//	batch, err := p.Batch(paths) // *tensor.Dense [len(paths), 3, 224, 224]
//
// Which preprocessing a model wants is its contract's business (package
// onnx/contract); dataset.PreprocessingFor turns it into a Pipeline.
//
// Resize reproduces PIL's Image.resize(BILINEAR) bit for bit: separable
// passes (horizontal first), a triangle filter whose support grows with the
// downscale factor, per-pixel normalised weights in 22-bit fixed point and
// an 8-bit intermediate image.
package data
