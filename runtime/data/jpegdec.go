package data

import (
	"errors"
	"fmt"
)

// This file decodes JPEG files the way libjpeg(-turbo) does with its default
// settings, which is what PIL (and so torchvision) uses: Huffman-coded
// baseline and progressive files with 8-bit samples, the "islow" integer
// inverse DCT, "fancy" chroma upsampling and integer color conversion. The
// result matches PIL's pixels exactly. Other JPEG flavours (arithmetic
// coding, 12-bit, lossless, hierarchical) return errUnsupportedJPEG and are
// left to the standard library's decoder.

var errUnsupportedJPEG = errors.New("unsupported JPEG variant")

// zigzag[i] is the natural (row-major) index of the i-th coefficient in
// zigzag order.
var zigzag = [64]int{
	0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
	12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
	35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
	58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
}

type huffTable struct {
	lut     [256]uint16 // codes of up to 8 bits, by their next 8 bits: length<<8 | symbol; 0 if longer
	maxcode [17]int32   // largest code of each length, -1 if none
	mincode [17]int32
	valptr  [17]int32
	vals    []uint8
}

func newHuffTable(counts []uint8, vals []uint8) (*huffTable, error) {
	h := &huffTable{vals: vals}
	code, k := int32(0), int32(0)
	for l := 1; l <= 16; l++ {
		n := int32(counts[l-1])
		if code+n > 1<<l {
			return nil, fmt.Errorf("bad Huffman table")
		}
		h.valptr[l], h.mincode[l] = k, code
		h.maxcode[l] = -1
		if n > 0 {
			h.maxcode[l] = code + n - 1
		}
		for i := int32(0); i < n && l <= 8; i++ {
			c := code + i
			for j := c << (8 - l); j < (c+1)<<(8-l); j++ {
				h.lut[j] = uint16(l)<<8 | uint16(vals[k+i])
			}
		}
		code += n
		k += n
		code <<= 1
	}
	return h, nil
}

// bitReader reads entropy-coded data, removing the stuffed zero after each
// 0xFF. At a marker or the end of the file it supplies zero bits, as libjpeg
// does; reading past the end of the file makes the scan fail as truncated.
type bitReader struct {
	data     []byte
	pos      int
	acc      uint64 // the next n bits, in the low bits
	n        int
	marker   bool // reached a marker: feeding zeros
	eof      bool // reached the end of the file: feeding zeros
	padBytes int  // zero bytes fed at the end of the file
}

func (br *bitReader) fill() {
	for br.n <= 56 {
		var b byte
		switch {
		case br.marker || br.eof:
			if br.eof {
				br.padBytes++
			}
		case br.pos >= len(br.data):
			br.eof = true
			br.padBytes++
		case br.data[br.pos] != 0xFF:
			b = br.data[br.pos]
			br.pos++
		case br.pos+1 < len(br.data) && br.data[br.pos+1] == 0x00:
			b = 0xFF
			br.pos += 2
		case br.pos+1 >= len(br.data):
			br.eof = true
			br.padBytes++
		default:
			br.marker = true // leave pos at the marker
		}
		br.acc = br.acc<<8 | uint64(b)
		br.n += 8
	}
}

// truncated reports whether bits past the end of the file were used.
func (br *bitReader) truncated() bool { return br.padBytes*8 > br.n }

func (br *bitReader) reset() { br.acc, br.n, br.marker = 0, 0, false }

func (br *bitReader) bits(s int) int32 {
	if s == 0 {
		return 0
	}
	if br.n < s {
		br.fill()
	}
	br.n -= s
	return int32(br.acc>>br.n) & (1<<s - 1)
}

func (br *bitReader) bit() bool { return br.bits(1) != 0 }

func (br *bitReader) decode(h *huffTable) (uint8, error) {
	if h == nil {
		return 0, fmt.Errorf("scan uses an undefined Huffman table")
	}
	if br.n < 16 {
		br.fill()
	}
	if e := h.lut[(br.acc>>(br.n-8))&0xFF]; e != 0 {
		br.n -= int(e >> 8)
		return uint8(e), nil
	}
	for l := 9; l <= 16; l++ {
		code := int32(br.acc>>(br.n-l)) & (1<<l - 1)
		if code <= h.maxcode[l] {
			br.n -= l
			i := h.valptr[l] + code - h.mincode[l]
			if int(i) >= len(h.vals) {
				break
			}
			return h.vals[i], nil
		}
	}
	return 0, fmt.Errorf("corrupt scan data: bad Huffman code")
}

// extend turns s received bits into the signed value they code.
func extend(v int32, s int) int32 {
	if s > 0 && v < 1<<(s-1) {
		return v - 1<<s + 1
	}
	return v
}

type jpegComp struct {
	id        uint8
	h, v      int
	tq        int
	q         *[64]int32 // latched at the component's first scan
	w, ht     int        // samples: ceil(width*h/hmax) × ceil(height*v/vmax)
	bw, bh    int        // blocks allocated: the MCU grid's
	coef      []int16    // bw*bh blocks of 64, natural order
	dc, ac    int
	pred      int32
	scanCount int
}

type jpegDecoder struct {
	data          []byte
	pos           int
	width, height int
	progressive   bool
	comps         []*jpegComp
	hmax, vmax    int
	mcux, mcuy    int
	qt            [4]*[64]int32
	dcTab, acTab  [4]*huffTable
	restart       int
	jfif, adobe   bool
	transform     int
	eobrun        int32
	br            bitReader
	frame         bool
	scans         int
}

// maxScans bounds the work a small file can ask for: each scan may cover
// the whole image. Progressive files from encoders use about ten.
const maxScans = 200

// decodeJPEG decodes b; maxPixels bounds the declared size.
func decodeJPEG(b []byte, maxPixels int64) (im *Image, err error) {
	defer func() {
		if r := recover(); r != nil {
			im, err = nil, fmt.Errorf("corrupt JPEG (decoder fault: %v)", r)
		}
	}()
	d := &jpegDecoder{data: b}
	if len(b) < 2 || b[0] != 0xFF || b[1] != 0xD8 {
		return nil, fmt.Errorf("not a JPEG file")
	}
	d.pos = 2
	for {
		marker, seg, err := d.nextSegment()
		if err != nil {
			return nil, err
		}
		switch {
		case marker == 0xD9: // EOI
			return d.finish()
		case marker == 0xC0 || marker == 0xC1 || marker == 0xC2:
			if err := d.parseSOF(seg, marker == 0xC2, maxPixels); err != nil {
				return nil, err
			}
		case marker >= 0xC3 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC:
			return nil, fmt.Errorf("%w: SOF%d (arithmetic, lossless or hierarchical coding)", errUnsupportedJPEG, marker-0xC0)
		case marker == 0xCC:
			return nil, fmt.Errorf("%w: arithmetic coding", errUnsupportedJPEG)
		case marker == 0xC4:
			if err := d.parseDHT(seg); err != nil {
				return nil, err
			}
		case marker == 0xDB:
			if err := d.parseDQT(seg); err != nil {
				return nil, err
			}
		case marker == 0xDD:
			if len(seg) < 2 {
				return nil, fmt.Errorf("corrupt JPEG: short DRI segment")
			}
			d.restart = int(seg[0])<<8 | int(seg[1])
		case marker == 0xE0:
			if len(seg) >= 5 && string(seg[:5]) == "JFIF\x00" {
				d.jfif = true
			}
		case marker == 0xEE:
			if len(seg) >= 12 && string(seg[:5]) == "Adobe" {
				d.adobe, d.transform = true, int(seg[11])
			}
		case marker == 0xDA:
			if err := d.parseSOS(seg); err != nil {
				return nil, err
			}
		case marker == 0xDC:
			return nil, fmt.Errorf("%w: DNL marker", errUnsupportedJPEG)
		}
	}
}

// nextSegment finds the next marker and returns it with its payload (empty
// for markers without one).
func (d *jpegDecoder) nextSegment() (byte, []byte, error) {
	for {
		for d.pos < len(d.data) && d.data[d.pos] != 0xFF {
			d.pos++ // extraneous bytes, skipped as libjpeg does
		}
		for d.pos < len(d.data) && d.data[d.pos] == 0xFF {
			d.pos++
		}
		if d.pos >= len(d.data) {
			if d.frame && d.hasScans() {
				return 0xD9, nil, nil // missing EOI after complete data: accepted
			}
			return 0, nil, fmt.Errorf("truncated JPEG: unexpected end of file")
		}
		m := d.data[d.pos]
		d.pos++
		switch {
		case m == 0x00 || m >= 0xD0 && m <= 0xD7 || m == 0x01:
			continue // stuffed byte, stray restart marker or TEM
		case m == 0xD8 || m == 0xD9:
			return m, nil, nil
		}
		if d.pos+2 > len(d.data) {
			return 0, nil, fmt.Errorf("truncated JPEG: unexpected end of file")
		}
		n := int(d.data[d.pos])<<8 | int(d.data[d.pos+1])
		if n < 2 || d.pos+n > len(d.data) {
			return 0, nil, fmt.Errorf("truncated JPEG: marker 0x%02X segment runs past the end", m)
		}
		seg := d.data[d.pos+2 : d.pos+n]
		d.pos += n
		return m, seg, nil
	}
}

func (d *jpegDecoder) hasScans() bool {
	for _, c := range d.comps {
		if c.scanCount > 0 {
			return true
		}
	}
	return false
}

func (d *jpegDecoder) parseDQT(seg []byte) error {
	for len(seg) > 0 {
		pq, tq := int(seg[0]>>4), int(seg[0]&15)
		size := 64 * (pq + 1)
		if tq > 3 || pq > 1 || len(seg) < 1+size {
			return fmt.Errorf("corrupt JPEG: bad DQT segment")
		}
		q := new([64]int32)
		for i := range 64 {
			if pq == 0 {
				q[zigzag[i]] = int32(seg[1+i])
			} else {
				q[zigzag[i]] = int32(seg[1+2*i])<<8 | int32(seg[2+2*i])
			}
		}
		d.qt[tq] = q
		seg = seg[1+size:]
	}
	return nil
}

func (d *jpegDecoder) parseDHT(seg []byte) error {
	for len(seg) > 0 {
		if len(seg) < 17 {
			return fmt.Errorf("corrupt JPEG: bad DHT segment")
		}
		tc, th := seg[0]>>4, int(seg[0]&15)
		if tc > 1 || th > 3 {
			return fmt.Errorf("corrupt JPEG: bad DHT segment")
		}
		total := 0
		for _, c := range seg[1:17] {
			total += int(c)
		}
		if total > 256 || len(seg) < 17+total {
			return fmt.Errorf("corrupt JPEG: bad DHT segment")
		}
		h, err := newHuffTable(seg[1:17], append([]uint8(nil), seg[17:17+total]...))
		if err != nil {
			return fmt.Errorf("corrupt JPEG: %v", err)
		}
		if tc == 0 {
			d.dcTab[th] = h
		} else {
			d.acTab[th] = h
		}
		seg = seg[17+total:]
	}
	return nil
}

func (d *jpegDecoder) parseSOF(seg []byte, progressive bool, maxPixels int64) error {
	if d.frame {
		return fmt.Errorf("corrupt JPEG: two frames")
	}
	if len(seg) < 6 {
		return fmt.Errorf("corrupt JPEG: short SOF segment")
	}
	if seg[0] != 8 {
		return fmt.Errorf("%w: %d-bit samples", errUnsupportedJPEG, seg[0])
	}
	d.height = int(seg[1])<<8 | int(seg[2])
	d.width = int(seg[3])<<8 | int(seg[4])
	nf := int(seg[5])
	if d.height == 0 {
		return fmt.Errorf("%w: height given by a DNL marker", errUnsupportedJPEG)
	}
	if d.width == 0 {
		return fmt.Errorf("corrupt JPEG: width 0")
	}
	if int64(d.width)*int64(d.height) > maxPixels {
		return fmt.Errorf("%w: %dx%d pixels", ErrTooLarge, d.width, d.height)
	}
	if nf != 1 && nf != 3 && nf != 4 {
		return fmt.Errorf("%w: %d components", errUnsupportedJPEG, nf)
	}
	if len(seg) < 6+3*nf {
		return fmt.Errorf("corrupt JPEG: short SOF segment")
	}
	d.progressive = progressive
	for i := range nf {
		p := seg[6+3*i:]
		c := &jpegComp{id: p[0], h: int(p[1] >> 4), v: int(p[1] & 15), tq: int(p[2])}
		if c.h < 1 || c.h > 4 || c.v < 1 || c.v > 4 || c.tq > 3 {
			return fmt.Errorf("corrupt JPEG: bad sampling factors or table of component %d", i)
		}
		for _, o := range d.comps {
			if o.id == c.id {
				return fmt.Errorf("corrupt JPEG: duplicate component id %d", c.id)
			}
		}
		d.hmax, d.vmax = max(d.hmax, c.h), max(d.vmax, c.v)
		d.comps = append(d.comps, c)
	}
	d.mcux = (d.width + 8*d.hmax - 1) / (8 * d.hmax)
	d.mcuy = (d.height + 8*d.vmax - 1) / (8 * d.vmax)
	for _, c := range d.comps {
		if d.hmax%c.h != 0 || d.vmax%c.v != 0 {
			return fmt.Errorf("%w: fractional sampling factors", errUnsupportedJPEG)
		}
		c.w = (d.width*c.h + d.hmax - 1) / d.hmax
		c.ht = (d.height*c.v + d.vmax - 1) / d.vmax
		c.bw, c.bh = d.mcux*c.h, d.mcuy*c.v
		c.coef = make([]int16, c.bw*c.bh*64)
	}
	d.frame = true
	return nil
}

func (d *jpegDecoder) parseSOS(seg []byte) error {
	if !d.frame {
		return fmt.Errorf("corrupt JPEG: scan before frame header")
	}
	if len(seg) < 1 {
		return fmt.Errorf("corrupt JPEG: short SOS segment")
	}
	ns := int(seg[0])
	if ns < 1 || ns > 4 || len(seg) < 1+2*ns+3 {
		return fmt.Errorf("corrupt JPEG: bad SOS segment")
	}
	var comps []*jpegComp
	blocks := 0
	for i := range ns {
		id, tabs := seg[1+2*i], seg[2+2*i]
		var c *jpegComp
		for _, o := range d.comps {
			if o.id == id {
				c = o
			}
		}
		if c == nil {
			return fmt.Errorf("corrupt JPEG: scan names unknown component %d", id)
		}
		c.dc, c.ac = int(tabs>>4), int(tabs&15)
		if c.dc > 3 || c.ac > 3 {
			return fmt.Errorf("corrupt JPEG: bad table index in SOS")
		}
		comps = append(comps, c)
		blocks += c.h * c.v
	}
	if ns > 1 && blocks > 10 {
		return fmt.Errorf("corrupt JPEG: %d blocks in an MCU", blocks)
	}
	p := seg[1+2*ns:]
	ss, se, ah, al := int(p[0]), int(p[1]), int(p[2]>>4), int(p[2]&15)
	if d.progressive {
		bad := se > 63 || ss > se || ah > 13 || al > 13 || ss == 0 && se != 0 || ss > 0 && ns != 1
		if bad {
			return fmt.Errorf("corrupt JPEG: bad progressive scan parameters")
		}
	} else {
		ss, se, ah, al = 0, 63, 0, 0 // ignored by libjpeg in sequential mode
	}
	if d.scans++; d.scans > maxScans {
		return fmt.Errorf("corrupt JPEG: over %d scans", maxScans)
	}
	for _, c := range comps {
		if c.q == nil {
			if d.qt[c.tq] == nil {
				return fmt.Errorf("corrupt JPEG: component %d uses undefined quantization table %d", c.id, c.tq)
			}
			q := *d.qt[c.tq]
			c.q = &q
		}
		c.scanCount++
		c.pred = 0
	}
	d.eobrun = 0
	d.br = bitReader{data: d.data, pos: d.pos}
	err := d.scan(comps, ss, se, ah, al)
	if err == nil && d.br.truncated() {
		err = fmt.Errorf("truncated JPEG: the scan data ends early")
	}
	if err != nil {
		return err
	}
	d.pos = d.br.pos
	return nil
}

func (d *jpegDecoder) scan(comps []*jpegComp, ss, se, ah, al int) error {
	block := func(c *jpegComp, bx, by int) error {
		b := c.coef[(by*c.bw+bx)*64 : (by*c.bw+bx+1)*64]
		switch {
		case !d.progressive:
			return d.blockBaseline(c, b)
		case ss == 0 && ah == 0:
			return d.blockDCFirst(c, b, al)
		case ss == 0:
			if d.br.bit() {
				b[0] |= 1 << al
			}
			return nil
		case ah == 0:
			return d.blockACFirst(c, b, ss, se, al)
		}
		return d.blockACRefine(c, b, ss, se, al)
	}
	var units, perRow int
	if len(comps) == 1 {
		c := comps[0]
		perRow = (c.w + 7) / 8
		units = perRow * ((c.ht + 7) / 8)
	} else {
		perRow = d.mcux
		units = d.mcux * d.mcuy
	}
	for u := 0; u < units; u++ {
		if d.restart > 0 && u > 0 && u%d.restart == 0 {
			if err := d.handleRestart(comps); err != nil {
				return err
			}
		}
		ux, uy := u%perRow, u/perRow
		if len(comps) == 1 {
			if err := block(comps[0], ux, uy); err != nil {
				return err
			}
		} else {
			for _, c := range comps {
				for by := 0; by < c.v; by++ {
					for bx := 0; bx < c.h; bx++ {
						if err := block(c, ux*c.h+bx, uy*c.v+by); err != nil {
							return err
						}
					}
				}
			}
		}
		if d.br.eof && d.br.truncated() {
			return fmt.Errorf("truncated JPEG: the scan data ends early")
		}
	}
	return nil
}

// handleRestart skips to the restart marker and resets the predictors.
func (d *jpegDecoder) handleRestart(comps []*jpegComp) error {
	br := &d.br
	br.reset()
	pos := br.pos
	for pos+1 < len(d.data) && !(d.data[pos] == 0xFF && d.data[pos+1] != 0 && d.data[pos+1] != 0xFF) {
		pos++
	}
	if pos+1 >= len(d.data) {
		return fmt.Errorf("truncated JPEG: missing restart marker")
	}
	if m := d.data[pos+1]; m >= 0xD0 && m <= 0xD7 {
		pos += 2
	} // otherwise leave the marker: the rest of the scan reads zeros, as in libjpeg
	br.pos = pos
	for _, c := range comps {
		c.pred = 0
	}
	d.eobrun = 0
	return nil
}

func (d *jpegDecoder) blockBaseline(c *jpegComp, b []int16) error {
	t, err := d.br.decode(d.dcTab[c.dc])
	if err != nil {
		return err
	}
	if t > 16 {
		return fmt.Errorf("corrupt scan data: DC category %d", t)
	}
	c.pred += extend(d.br.bits(int(t)), int(t))
	b[0] = int16(c.pred)
	tab := d.acTab[c.ac]
	for k := 1; k < 64; k++ {
		rs, err := d.br.decode(tab)
		if err != nil {
			return err
		}
		r, s := int(rs>>4), int(rs&15)
		if s == 0 {
			if r != 15 {
				break
			}
			k += 15
			continue
		}
		k += r
		if k > 63 {
			return fmt.Errorf("corrupt scan data: coefficient index past 63")
		}
		b[zigzag[k]] = int16(extend(d.br.bits(s), s))
	}
	return nil
}

func (d *jpegDecoder) blockDCFirst(c *jpegComp, b []int16, al int) error {
	t, err := d.br.decode(d.dcTab[c.dc])
	if err != nil {
		return err
	}
	if t > 16 {
		return fmt.Errorf("corrupt scan data: DC category %d", t)
	}
	c.pred += extend(d.br.bits(int(t)), int(t))
	b[0] = int16(c.pred << al)
	return nil
}

func (d *jpegDecoder) blockACFirst(c *jpegComp, b []int16, ss, se, al int) error {
	if d.eobrun > 0 {
		d.eobrun--
		return nil
	}
	tab := d.acTab[c.ac]
	for k := ss; k <= se; k++ {
		rs, err := d.br.decode(tab)
		if err != nil {
			return err
		}
		r, s := int(rs>>4), int(rs&15)
		if s == 0 {
			if r == 15 {
				k += 15
				continue
			}
			d.eobrun = int32(1)<<r + d.br.bits(r) - 1
			break
		}
		k += r
		if k > 63 {
			return fmt.Errorf("corrupt scan data: coefficient index past 63")
		}
		b[zigzag[k]] = int16(extend(d.br.bits(s), s) << al)
	}
	return nil
}

func (d *jpegDecoder) blockACRefine(c *jpegComp, b []int16, ss, se, al int) error {
	p1, m1 := int16(1)<<al, int16(-1)<<al
	refine := func(z int) {
		if b[z] != 0 && d.br.bit() && b[z]&p1 == 0 {
			if b[z] >= 0 {
				b[z] += p1
			} else {
				b[z] += m1
			}
		}
	}
	k := ss
	if d.eobrun == 0 {
		tab := d.acTab[c.ac]
		for ; k <= se; k++ {
			rs, err := d.br.decode(tab)
			if err != nil {
				return err
			}
			r, s := int(rs>>4), int(rs&15)
			var v int16
			if s != 0 {
				// The size of a newly nonzero coefficient is always 1.
				if d.br.bit() {
					v = p1
				} else {
					v = m1
				}
			} else if r != 15 {
				d.eobrun = int32(1)<<r + d.br.bits(r)
				break
			}
			// Skip r zero coefficients, refining the nonzero ones passed.
			for k <= se {
				z := zigzag[k]
				if b[z] != 0 {
					refine(z)
				} else {
					if r == 0 {
						break
					}
					r--
				}
				k++
			}
			if v != 0 {
				if k > se {
					return fmt.Errorf("corrupt scan data: coefficient index past the band")
				}
				b[zigzag[k]] = v
			}
		}
	}
	if d.eobrun > 0 {
		for ; k <= se; k++ {
			refine(zigzag[k])
		}
		d.eobrun--
	}
	return nil
}

// finish runs the inverse DCT and the color conversion.
func (d *jpegDecoder) finish() (*Image, error) {
	if !d.frame || !d.hasScans() {
		return nil, fmt.Errorf("corrupt JPEG: no image data")
	}
	planes := make([][]uint8, len(d.comps))
	for i, c := range d.comps {
		if c.q == nil { // never scanned: libjpeg outputs mid-gray
			c.q = new([64]int32)
		}
		bw, bh := (c.w+7)/8, (c.ht+7)/8
		stride := bw * 8
		plane := make([]uint8, stride*bh*8)
		for by := 0; by < bh; by++ {
			for bx := 0; bx < bw; bx++ {
				idctIslow(c.coef[(by*c.bw+bx)*64:(by*c.bw+bx+1)*64], c.q, plane[by*8*stride+bx*8:], stride)
			}
		}
		hf, vf := d.hmax/c.h, d.vmax/c.v
		planes[i] = upsample(plane, stride, c.w, c.ht, hf, vf, d.width, d.height)
	}
	w, h := d.width, d.height
	switch len(d.comps) {
	case 1:
		return &Image{Width: w, Height: h, Channels: 1, Pix: planes[0]}, nil
	case 3:
		im := NewImage(w, h, 3)
		if d.colorSpace3() == "RGB" {
			for i := range planes[0] {
				im.Pix[3*i], im.Pix[3*i+1], im.Pix[3*i+2] = planes[0][i], planes[1][i], planes[2][i]
			}
			return im, nil
		}
		for i := range planes[0] {
			putRGB(im.Pix[3*i:], planes[0][i], planes[1][i], planes[2][i])
		}
		return im, nil
	}
	// Four components: CMYK, or YCCK when an Adobe marker has a transform.
	// libjpeg outputs Adobe's inverted CMYK; PIL inverts it back ("CMYK;I")
	// and converts to RGB with its cmyk2rgb.
	im := NewImage(w, h, 3)
	var raw [3]uint8
	for i := range planes[0] {
		if d.adobe && d.transform != 0 {
			putRGB(raw[:3], planes[0][i], planes[1][i], planes[2][i])
			raw[0], raw[1], raw[2] = 255-raw[0], 255-raw[1], 255-raw[2]
		} else {
			raw[0], raw[1], raw[2] = planes[0][i], planes[1][i], planes[2][i]
		}
		// PIL: C = 255-raw[c], K = 255-raw[3]; R = (255-K) - (C*(255-K))/255 rounded.
		nk := int(planes[3][i])
		for c := 0; c < 3; c++ {
			t := int(255-raw[c])*nk + 128
			im.Pix[3*i+c] = uint8(nk - ((t>>8)+t)>>8)
		}
	}
	return im, nil
}

// colorSpace3 guesses the color space of a 3-component file as libjpeg
// does: JFIF means YCbCr; else an Adobe marker's transform (0 = RGB); else
// component ids 'R','G','B' mean RGB; else YCbCr.
func (d *jpegDecoder) colorSpace3() string {
	switch {
	case d.jfif:
		return "YCbCr"
	case d.adobe:
		if d.transform == 0 {
			return "RGB"
		}
		return "YCbCr"
	case d.comps[0].id == 'R' && d.comps[1].id == 'G' && d.comps[2].id == 'B':
		return "RGB"
	}
	return "YCbCr"
}

// The islow inverse DCT's fixed-point constants (13 fractional bits).
const (
	fix0298631336 = 2446
	fix0390180644 = 3196
	fix0541196100 = 4433
	fix0765366865 = 6270
	fix0899976223 = 7373
	fix1175875602 = 9633
	fix1501321110 = 12299
	fix1847759065 = 15137
	fix1961570560 = 16069
	fix2053119869 = 16819
	fix2562915447 = 20995
	fix3072711026 = 25172
	constBits     = 13
	pass1Bits     = 2
)

// idct1D is one pass of the islow inverse DCT (Loeffler, Ligtenberg and
// Moschytz) on eight values; it returns the eight outputs before
// descaling, in the order out0..out7.
func idct1D(in *[8]int64) [8]int64 {
	z2, z3 := in[2], in[6]
	z1 := (z2 + z3) * fix0541196100
	tmp2 := z1 - z3*fix1847759065
	tmp3 := z1 + z2*fix0765366865
	tmp0 := (in[0] + in[4]) << constBits
	tmp1 := (in[0] - in[4]) << constBits
	tmp10, tmp13 := tmp0+tmp3, tmp0-tmp3
	tmp11, tmp12 := tmp1+tmp2, tmp1-tmp2

	tmp0, tmp1, tmp2, tmp3 = in[7], in[5], in[3], in[1]
	z1, z2 = tmp0+tmp3, tmp1+tmp2
	z3, z4 := tmp0+tmp2, tmp1+tmp3
	z5 := (z3 + z4) * fix1175875602
	tmp0 *= fix0298631336
	tmp1 *= fix2053119869
	tmp2 *= fix3072711026
	tmp3 *= fix1501321110
	z1 *= -fix0899976223
	z2 *= -fix2562915447
	z3 = z3*-fix1961570560 + z5
	z4 = z4*-fix0390180644 + z5
	tmp0 += z1 + z3
	tmp1 += z2 + z4
	tmp2 += z2 + z3
	tmp3 += z1 + z4
	return [8]int64{tmp10 + tmp3, tmp11 + tmp2, tmp12 + tmp1, tmp13 + tmp0,
		tmp13 - tmp0, tmp12 - tmp1, tmp11 - tmp2, tmp10 - tmp3}
}

func descale(x int64, n uint) int64 { return (x + 1<<(n-1)) >> n }

// rangeLimit maps an inverse DCT output (centred on 0) to a sample as
// libjpeg's post-IDCT table does, wrapping far-out values the same way.
func rangeLimit(x int64) uint8 {
	i := int(x) & 1023
	switch {
	case i < 128:
		return uint8(i + 128)
	case i < 512:
		return 255
	case i < 896:
		return 0
	}
	return uint8(i - 896)
}

// idctIslow dequantizes one block and writes its 8×8 samples to out (rows
// stride apart).
func idctIslow(coef []int16, q *[64]int32, out []uint8, stride int) {
	var ws [64]int32
	var col [8]int64
	for x := 0; x < 8; x++ {
		for y := 0; y < 8; y++ {
			col[y] = int64(int32(coef[y*8+x]) * int32(int16(q[y*8+x]))) // libjpeg keeps quantizers in 16 bits
		}
		r := idct1D(&col)
		for y := 0; y < 8; y++ {
			ws[y*8+x] = int32(descale(r[y], constBits-pass1Bits))
		}
	}
	for y := 0; y < 8; y++ {
		for x := 0; x < 8; x++ {
			col[x] = int64(ws[y*8+x])
		}
		r := idct1D(&col)
		row := out[y*stride : y*stride+8]
		for x := 0; x < 8; x++ {
			row[x] = rangeLimit(descale(r[x], constBits+pass1Bits+3))
		}
	}
}
