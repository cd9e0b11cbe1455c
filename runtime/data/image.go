package data

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // register the GIF decoder
	"image/jpeg"
	_ "image/png" // register the PNG decoder
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/internal/memlimit"
)

// MaxPixels is the largest image, in pixels (width × height), that Load and
// Decode accept. The size is read from the header before decoding.
const MaxPixels = 100_000_000

// maxFileBytes bounds how much of a file Decode reads: far above any image
// of MaxPixels pixels in a compressed format.
const maxFileBytes = 1 << 30

// An Image is an 8-bit image with its channels interleaved: channel c of
// pixel (x, y) is Pix[(y*Width+x)*Channels+c]. Channels is 1 (gray, PIL mode
// "L") or 3 (RGB).
type Image struct {
	Width, Height, Channels int
	Pix                     []uint8
}

// NewImage returns a black image.
func NewImage(width, height, channels int) *Image {
	return &Image{Width: width, Height: height, Channels: channels, Pix: make([]uint8, width*height*channels)}
}

// An Error reports a file that could not be read, decoded or transformed.
type Error struct {
	File string // the file's path, or the name given to Decode
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("image %s: %v", e.File, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

var (
	// ErrTooLarge is wrapped by the *Error for an image over MaxPixels.
	ErrTooLarge = errors.New("image too large")
	// ErrFormat is wrapped by the *Error for a file that is not a PNG, JPEG
	// or GIF image.
	ErrFormat = errors.New("not a PNG, JPEG or GIF image")
)

// IsImageFile reports whether the file name has an image extension Load
// reads: .png, .jpg, .jpeg or .gif, in any case.
func IsImageFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".png", ".jpg", ".jpeg", ".gif":
		return true
	}
	return false
}

// Load reads and decodes an image file. Gray images have 1 channel and all
// others 3; alpha is dropped, as PIL's convert("RGB") does.
func Load(path string) (*Image, error) { return LoadConcurrent(path, 1) }

// LoadConcurrent is Load for one of n decoders running at once (a loader's
// workers): the memory a decode needs, from the header's size and sample
// depth, times n, must fit in graft's memory limit, or the image is refused
// before it is decoded.
func LoadConcurrent(path string, n int) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Err: fileio.Reason(err)}
	}
	defer f.Close()
	size := int64(-1)
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return decode(f, path, size, n)
}

// Decode decodes an image from r; name is used in errors.
func Decode(r io.Reader, name string) (*Image, error) { return decode(r, name, -1, 1) }

// decode decodes an image of size bytes (-1 if unknown) from r, for one of
// n decoders at once. The header is read first: only once its size and
// depth pass the pixel and memory limits is the rest read and decoded, so
// neither a small file declaring a huge image nor an endless stream
// (/dev/zero) is read further than its header.
func decode(r io.Reader, name string, size int64, n int) (*Image, error) {
	fail := func(err error) (*Image, error) { return nil, &Error{File: name, Err: err} }
	if size > maxFileBytes {
		return fail(fmt.Errorf("%w: the file is over %d bytes", ErrTooLarge, maxFileBytes))
	}
	var head bytes.Buffer
	br := bufio.NewReader(r)
	cfg, format, err := image.DecodeConfig(io.TeeReader(br, &head))
	if err != nil {
		if rest, _ := br.Peek(1); len(rest) == 0 && size < 0 {
			size = int64(head.Len()) // the stream ended: its size is known
		}
		return fail(decodeError(format, err, int(max(size, int64(head.Len())))))
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return fail(fmt.Errorf("%s header declares an empty %dx%d image", format, cfg.Width, cfg.Height))
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return fail(fmt.Errorf("%w: %s header declares %dx%d pixels, over the limit of %d", ErrTooLarge, format, cfg.Width, cfg.Height, MaxPixels))
	}
	if err := checkDecodeMemory(cfg, format, size, n); err != nil {
		return fail(err)
	}
	rest, err := io.ReadAll(io.LimitReader(br, maxFileBytes+1-int64(head.Len())))
	if err != nil {
		return fail(fileio.Reason(err))
	}
	b := append(head.Bytes(), rest...)
	if len(b) > maxFileBytes {
		return fail(fmt.Errorf("%w: the file is over %d bytes", ErrTooLarge, maxFileBytes))
	}
	var m image.Image
	if format == "jpeg" {
		var im *Image
		// Assign, not declare: the fallback's error below must reach the
		// check after this block.
		if im, err = decodeJPEG(b, MaxPixels); err == nil {
			return im, nil
		}
		if !errors.Is(err, errUnsupportedJPEG) {
			return fail(err)
		}
		m, err = jpeg.Decode(bytes.NewReader(b)) // decodes what it can, or says why not
	} else {
		m, _, err = image.Decode(bytes.NewReader(b))
	}
	if err != nil {
		return fail(decodeError(format, err, len(b)))
	}
	im := FromImage(m)
	if im.Width != cfg.Width || im.Height != cfg.Height {
		return fail(fmt.Errorf("%s: decoded %dx%d pixels, the header declares %dx%d", format, im.Width, im.Height, cfg.Width, cfg.Height))
	}
	return im, nil
}

// checkDecodeMemory checks what decoding an image of cfg takes, times n
// decoders at once, against graft's memory limit: the file's bytes (a
// stream's are bounded by maxFileBytes only), the decoder's image at
// the depth the header declares (a 16-bit RGB PNG decodes to 8 bytes a
// pixel), and the 1- or 3-channel result.
func checkDecodeMemory(cfg image.Config, format string, size int64, n int) error {
	px := int64(cfg.Width) * int64(cfg.Height)
	depth := decodedBytesPerPixel(cfg.ColorModel)
	one := memlimit.Add(max(size, 0), memlimit.Mul(px, depth), memlimit.Mul(px, 3))
	what := fmt.Sprintf("decoding this %dx%d %s image (%d bytes a pixel, %s)", cfg.Width, cfg.Height, format, depth, memlimit.Format(one))
	if n > 1 {
		what += fmt.Sprintf(" in each of %d workers at once", n)
	}
	return memlimit.Check(what, memlimit.Mul(one, int64(max(n, 1))))
}

// decodedBytesPerPixel is the size of a pixel of the image the standard
// decoders return for a color model.
func decodedBytesPerPixel(m color.Model) int64 {
	switch m {
	case color.GrayModel, color.AlphaModel:
		return 1
	case color.Gray16Model, color.Alpha16Model:
		return 2
	case color.RGBA64Model, color.NRGBA64Model:
		return 8
	case color.YCbCrModel:
		return 3
	case color.CMYKModel, color.RGBAModel, color.NRGBAModel:
		return 4
	}
	if _, ok := m.(color.Palette); ok {
		return 1
	}
	return 8 // the widest standard pixel
}

// decodeError words a standard decoder's error (format is "png", "jpeg"
// or "gif", or "" when the file is none of them) with the format named
// once: the decoders' own messages start "png: ", "gif: " or not at all.
func decodeError(format string, err error, size int) error {
	if errors.Is(err, image.ErrFormat) {
		return ErrFormat
	}
	msg := strings.TrimPrefix(err.Error(), format+": ")
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || strings.HasSuffix(msg, "unexpected EOF") {
		what := strings.TrimSuffix(strings.TrimSuffix(msg, "unexpected EOF"), ": ")
		if what == "" || what == "EOF" || what == "invalid format" {
			return fmt.Errorf("%s: truncated file (%d bytes)", format, size)
		}
		return fmt.Errorf("%s: truncated file (%d bytes): %s", format, size, what)
	}
	if msg != err.Error() {
		return err // already starts with the format
	}
	return fmt.Errorf("%s: %w", format, err)
}

// FromImage converts a decoded standard-library image: gray images to 1
// channel, all others to 3 (alpha dropped; 16-bit samples keep their high
// byte). JPEG YCbCr images are converted as libjpeg does (see package doc).
func FromImage(m image.Image) *Image {
	r := m.Bounds()
	w, h := r.Dx(), r.Dy()
	switch m := m.(type) {
	case *image.Gray:
		im := NewImage(w, h, 1)
		for y := 0; y < h; y++ {
			copy(im.Pix[y*w:(y+1)*w], m.Pix[m.PixOffset(r.Min.X, r.Min.Y+y):])
		}
		return im
	case *image.Gray16:
		im := NewImage(w, h, 1)
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(r.Min.X, r.Min.Y+y):]
			for x := 0; x < w; x++ {
				im.Pix[y*w+x] = row[2*x]
			}
		}
		return im
	case *image.YCbCr:
		return fromYCbCr(m)
	case *image.CMYK:
		return fromCMYK(m)
	case *image.NRGBA:
		return fromInterleaved(m.Pix, m.Stride, m.PixOffset(r.Min.X, r.Min.Y), w, h, 4, 1)
	case *image.RGBA:
		if m.Opaque() {
			return fromInterleaved(m.Pix, m.Stride, m.PixOffset(r.Min.X, r.Min.Y), w, h, 4, 1)
		}
	case *image.NRGBA64:
		return fromInterleaved(m.Pix, m.Stride, m.PixOffset(r.Min.X, r.Min.Y), w, h, 8, 2)
	case *image.Paletted:
		im := NewImage(w, h, 3)
		pal := make([][3]uint8, len(m.Palette))
		for i, c := range m.Palette {
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			pal[i] = [3]uint8{n.R, n.G, n.B}
		}
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(r.Min.X, r.Min.Y+y):]
			for x := 0; x < w; x++ {
				var c [3]uint8
				if int(row[x]) < len(pal) {
					c = pal[row[x]]
				}
				copy(im.Pix[(y*w+x)*3:], c[:])
			}
		}
		return im
	}
	// RGBA, RGBA64 (opaque for PNGs without alpha) and anything else.
	im := NewImage(w, h, 3)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.NRGBA64Model.Convert(m.At(r.Min.X+x, r.Min.Y+y)).(color.NRGBA64)
			i := (y*w + x) * 3
			im.Pix[i], im.Pix[i+1], im.Pix[i+2] = uint8(c.R>>8), uint8(c.G>>8), uint8(c.B>>8)
		}
	}
	return im
}

// fromInterleaved copies the RGB samples of 4-channel pixels of bpp bytes,
// keeping the first (high) byte of each sample of size bytes.
func fromInterleaved(pix []uint8, stride, off, w, h, bpp, size int) *Image {
	im := NewImage(w, h, 3)
	for y := 0; y < h; y++ {
		row := pix[off+y*stride:]
		for x := 0; x < w; x++ {
			p := row[x*bpp:]
			i := (y*w + x) * 3
			im.Pix[i], im.Pix[i+1], im.Pix[i+2] = p[0], p[size], p[2*size]
		}
	}
	return im
}

// fromCMYK converts as PIL's CMYK to RGB conversion does:
// R = (255-K) - round(C*(255-K)/255), and so on.
func fromCMYK(m *image.CMYK) *Image {
	r := m.Bounds()
	w, h := r.Dx(), r.Dy()
	im := NewImage(w, h, 3)
	for y := 0; y < h; y++ {
		row := m.Pix[m.PixOffset(r.Min.X, r.Min.Y+y):]
		for x := 0; x < w; x++ {
			p := row[4*x:]
			nk := 255 - int(p[3])
			for c := 0; c < 3; c++ {
				t := int(p[c])*nk + 128
				im.Pix[(y*w+x)*3+c] = uint8(nk - ((t>>8)+t)>>8)
			}
		}
	}
	return im
}

// Gray converts to one channel as PIL's convert("L") does:
// L = (R*19595 + G*38470 + B*7471 + 32768) >> 16, its fixed-point form of
// R*299/1000 + G*587/1000 + B*114/1000. A gray image is returned as is.
func (im *Image) Gray() *Image {
	if im.Channels == 1 {
		return im
	}
	out := NewImage(im.Width, im.Height, 1)
	for i := range out.Pix {
		p := im.Pix[3*i:]
		out.Pix[i] = uint8((uint32(p[0])*19595 + uint32(p[1])*38470 + uint32(p[2])*7471 + 0x8000) >> 16)
	}
	return out
}

// RGB converts to three channels, replicating a gray image's channel. An
// RGB image is returned as is.
func (im *Image) RGB() *Image {
	if im.Channels == 3 {
		return im
	}
	out := NewImage(im.Width, im.Height, 3)
	for i, v := range im.Pix {
		out.Pix[3*i], out.Pix[3*i+1], out.Pix[3*i+2] = v, v, v
	}
	return out
}

// Crop returns the part of the image with top-left corner (left, top) and
// the given size. Parts outside the image are black (torchvision pads with
// zeros when a crop exceeds the image).
func (im *Image) Crop(left, top, width, height int) *Image {
	out := NewImage(width, height, im.Channels)
	c := im.Channels
	for y := 0; y < height; y++ {
		sy := top + y
		if sy < 0 || sy >= im.Height {
			continue
		}
		x0, x1 := max(0, -left), min(width, im.Width-left)
		if x0 >= x1 {
			continue
		}
		copy(out.Pix[(y*width+x0)*c:(y*width+x1)*c], im.Pix[(sy*im.Width+left+x0)*c:])
	}
	return out
}

// FlipHorizontal returns the mirror image.
func (im *Image) FlipHorizontal() *Image {
	out := NewImage(im.Width, im.Height, im.Channels)
	c := im.Channels
	for y := 0; y < im.Height; y++ {
		for x := 0; x < im.Width; x++ {
			copy(out.Pix[(y*im.Width+x)*c:(y*im.Width+x+1)*c], im.Pix[(y*im.Width+im.Width-1-x)*c:])
		}
	}
	return out
}
