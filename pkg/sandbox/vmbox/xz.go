package vmbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// unxzKernel decompresses the xz stream a kernel build makes (scripts/xz_wrap.sh):
// one block, filters x86 BCJ then LZMA2, CRC32 check. github.com/ulikunitz/xz
// has no BCJ filter, so the container is parsed here, the LZMA2 data decoded
// with its lzma package and the BCJ filter undone by a bcjX86Writer; the
// block's CRC32 and the index's sizes then prove the result. The output is
// streamed to w (the decoder holds its dictionary, at most the stream's, and
// a few KiB): the vmlinux is never whole in memory.
func unxzKernel(stream []byte, w io.Writer) error {
	const headerLen, footerLen = 12, 12
	if len(stream) < headerLen+footerLen || !bytes.HasPrefix(stream, []byte("\xfd7zXZ\x00")) {
		return errors.New("xz: no stream header")
	}
	if !bytes.HasSuffix(stream, []byte("YZ")) {
		return errors.New("xz: no stream footer (concatenated or padded streams are not supported)")
	}
	check := stream[7] & 0x0f
	checkLen := map[byte]int{0: 0, 1: 4, 4: 8, 10: 32}[check]
	if check != 0 && checkLen == 0 {
		return fmt.Errorf("xz: unsupported check type %d", check)
	}

	// The index (found from the footer's backward size) gives the one
	// block's unpadded and uncompressed sizes.
	footer := stream[len(stream)-footerLen:]
	indexLen := (int(binary.LittleEndian.Uint32(footer[4:8])) + 1) * 4
	indexStart := len(stream) - footerLen - indexLen
	if indexStart < headerLen {
		return errors.New("xz: bad index size")
	}
	idx := stream[indexStart:]
	if idx[0] != 0 {
		return errors.New("xz: no index indicator")
	}
	p := 1
	records, err := uvarint(idx, &p)
	if err != nil || records != 1 {
		return fmt.Errorf("xz: %d blocks (a kernel stream has one): %v", records, err)
	}
	unpadded, err := uvarint(idx, &p)
	if err != nil {
		return err
	}
	size, err := uvarint(idx, &p)
	if err != nil {
		return err
	}

	// Block header: size, flags, optional sizes, the filter chain.
	blk := stream[headerLen:]
	hdrLen := (int(blk[0]) + 1) * 4
	if blk[0] == 0 || hdrLen > len(blk) {
		return errors.New("xz: bad block header")
	}
	hdr := blk[:hdrLen]
	if crc32.ChecksumIEEE(hdr[:hdrLen-4]) != binary.LittleEndian.Uint32(hdr[hdrLen-4:]) {
		return errors.New("xz: block header checksum mismatch")
	}
	flags := hdr[1]
	p = 2
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} {
		if present {
			if _, err := uvarint(hdr, &p); err != nil {
				return err
			}
		}
	}
	var bcj bool
	var dictCap int
	for i := 0; i <= int(flags&3); i++ {
		id, err := uvarint(hdr, &p)
		if err != nil {
			return err
		}
		n, err := uvarint(hdr, &p)
		if err != nil || p+int(n) > hdrLen-4 {
			return fmt.Errorf("xz: bad filter properties: %v", err)
		}
		props := hdr[p : p+int(n)]
		p += int(n)
		last := i == int(flags&3)
		switch {
		case id == 0x04 && !last && (n == 0 || (n == 4 && binary.LittleEndian.Uint32(props) == 0)):
			bcj = true
		case id == 0x21 && last && n == 1:
			dictCap = lzma2DictCap(props[0])
		default:
			return fmt.Errorf("xz: unsupported filter %#x (kernels use x86 BCJ and LZMA2)", id)
		}
	}
	if dictCap == 0 {
		return errors.New("xz: no LZMA2 filter")
	}

	// Bound the dictionary by the output: LZMA2 never looks further back.
	dictCap = max(min(dictCap, int(size)), lzma.MinDictCap)
	r, err := lzma.Reader2Config{DictCap: dictCap}.NewReader2(bytes.NewReader(blk[hdrLen:]))
	if err != nil {
		return fmt.Errorf("xz: %w", err)
	}
	crc := crc32.NewIEEE()
	n := &countingWriter{w: io.MultiWriter(w, crc)}
	var out io.Writer = n
	var bw *bcjX86Writer
	if bcj {
		bw = &bcjX86Writer{w: n, prevPos: ^uint(0)}
		out = bw
	}
	if _, err := io.Copy(out, r); err != nil {
		return fmt.Errorf("xz: lzma2: %w", err)
	}
	if bw != nil {
		if err := bw.Close(); err != nil {
			return err
		}
	}
	if n.n != size {
		return fmt.Errorf("xz: %d bytes decoded, the index says %d", n.n, size)
	}
	if check == 1 {
		// The check follows the compressed data and its padding to 4 bytes.
		compressed := int(unpadded) - hdrLen - checkLen
		at := headerLen + hdrLen + (compressed+3)&^3
		if compressed < 0 || at+4 > indexStart {
			return errors.New("xz: bad block size")
		}
		if crc.Sum32() != binary.LittleEndian.Uint32(stream[at:]) {
			return errors.New("xz: CRC32 mismatch")
		}
	}
	return nil
}

// countingWriter counts what passes through it.
type countingWriter struct {
	w     io.Writer
	n     uint64
	limit uint64 // 0: none
}

// errTooLarge is a write past a countingWriter's limit.
var errTooLarge = errors.New("output larger than its limit")

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.limit != 0 && c.n+uint64(len(p)) > c.limit {
		return 0, fmt.Errorf("%w (%d bytes)", errTooLarge, c.limit)
	}
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}

// lzma2DictCap decodes LZMA2's one-byte dictionary size property.
func lzma2DictCap(b byte) int {
	bits := int(b & 0x3f)
	if bits >= 40 {
		return 1<<32 - 1
	}
	return (2 | bits&1) << (bits/2 + 11)
}

func uvarint(b []byte, p *int) (uint64, error) {
	if *p >= len(b) {
		return 0, errors.New("xz: truncated")
	}
	v, n := binary.Uvarint(b[*p:])
	if n <= 0 || n > 9 {
		return 0, errors.New("xz: bad integer")
	}
	*p += n
	return v, nil
}

// bcjX86Writer undoes xz's x86 BCJ filter on a stream: relative CALL/JMP
// targets the encoder made absolute become relative again. It follows
// xz-embedded's bcj_x86 (public domain) over absolute stream offsets, so
// the output does not depend on how the input is cut into writes: a byte is
// final once 4 more follow it (an instruction's operand is the 4 bytes after
// its opcode), and the stream's last 4 bytes pass unconverted, as in xz.
// Close writes them.
type bcjX86Writer struct {
	w        io.Writer
	buf      []byte // not yet written; buf[0] is at stream offset base
	base     uint
	next     uint // stream offset where the scan resumes
	prevPos  uint // start with ^uint(0)
	prevMask uint32
}

func (b *bcjX86Writer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if len(b.buf) <= 4 {
		return len(p), nil
	}
	limit := b.base + uint(len(b.buf)) - 4
	b.filter(limit)
	final := limit - b.base
	if _, err := b.w.Write(b.buf[:final]); err != nil {
		return 0, err
	}
	b.buf = b.buf[:copy(b.buf, b.buf[final:])]
	b.base = limit
	return len(p), nil
}

// Close writes the last bytes, which the filter leaves as they are.
func (b *bcjX86Writer) Close() error {
	_, err := b.w.Write(b.buf)
	b.buf = nil
	return err
}

// filter converts the instructions that start before the stream offset limit.
func (b *bcjX86Writer) filter(limit uint) {
	allowed := [8]bool{true, true, true, false, true, false, false, false}
	bitNum := [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}
	msb := func(c byte) bool { return c == 0x00 || c == 0xff }
	at := func(i uint) []byte { return b.buf[i-b.base:] }
	i := b.next
	for ; i < limit; i++ {
		if at(i)[0]&0xfe != 0xe8 {
			continue
		}
		b.prevPos = i - b.prevPos
		if b.prevPos > 3 {
			b.prevMask = 0
		} else {
			b.prevMask = (b.prevMask << (b.prevPos - 1)) & 7
			if b.prevMask != 0 {
				c := at(i)[4-uint(bitNum[b.prevMask])]
				if !allowed[b.prevMask] || msb(c) {
					b.prevPos = i
					b.prevMask = b.prevMask<<1 | 1
					continue
				}
			}
		}
		b.prevPos = i
		if !msb(at(i)[4]) {
			b.prevMask = b.prevMask<<1 | 1
			continue
		}
		src := binary.LittleEndian.Uint32(at(i)[1:])
		var dest uint32
		for {
			dest = src - uint32(i+5)
			if b.prevMask == 0 {
				break
			}
			j := bitNum[b.prevMask] * 8
			if !msb(byte(dest >> (24 - j))) {
				break
			}
			src = dest ^ (1<<(32-j) - 1)
		}
		dest &= 0x01ffffff
		dest |= -(dest & 0x01000000)
		binary.LittleEndian.PutUint32(at(i)[1:], dest)
		i += 4
	}
	b.next = i
}
