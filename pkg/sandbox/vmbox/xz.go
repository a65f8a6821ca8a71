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
// with its lzma package and the BCJ filter undone by bcjX86Decode; the block's
// CRC32 and the index's sizes then prove the result.
func unxzKernel(stream []byte) ([]byte, error) {
	const headerLen, footerLen = 12, 12
	if len(stream) < headerLen+footerLen || !bytes.HasPrefix(stream, []byte("\xfd7zXZ\x00")) {
		return nil, errors.New("xz: no stream header")
	}
	if !bytes.HasSuffix(stream, []byte("YZ")) {
		return nil, errors.New("xz: no stream footer (concatenated or padded streams are not supported)")
	}
	check := stream[7] & 0x0f
	checkLen := map[byte]int{0: 0, 1: 4, 4: 8, 10: 32}[check]
	if check != 0 && checkLen == 0 {
		return nil, fmt.Errorf("xz: unsupported check type %d", check)
	}

	// The index (found from the footer's backward size) gives the one
	// block's unpadded and uncompressed sizes.
	footer := stream[len(stream)-footerLen:]
	indexLen := (int(binary.LittleEndian.Uint32(footer[4:8])) + 1) * 4
	indexStart := len(stream) - footerLen - indexLen
	if indexStart < headerLen {
		return nil, errors.New("xz: bad index size")
	}
	idx := stream[indexStart:]
	if idx[0] != 0 {
		return nil, errors.New("xz: no index indicator")
	}
	p := 1
	records, err := uvarint(idx, &p)
	if err != nil || records != 1 {
		return nil, fmt.Errorf("xz: %d blocks (a kernel stream has one): %v", records, err)
	}
	unpadded, err := uvarint(idx, &p)
	if err != nil {
		return nil, err
	}
	size, err := uvarint(idx, &p)
	if err != nil {
		return nil, err
	}

	// Block header: size, flags, optional sizes, the filter chain.
	blk := stream[headerLen:]
	hdrLen := (int(blk[0]) + 1) * 4
	if blk[0] == 0 || hdrLen > len(blk) {
		return nil, errors.New("xz: bad block header")
	}
	hdr := blk[:hdrLen]
	if crc32.ChecksumIEEE(hdr[:hdrLen-4]) != binary.LittleEndian.Uint32(hdr[hdrLen-4:]) {
		return nil, errors.New("xz: block header checksum mismatch")
	}
	flags := hdr[1]
	p = 2
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} {
		if present {
			if _, err := uvarint(hdr, &p); err != nil {
				return nil, err
			}
		}
	}
	var bcj bool
	var dictCap int
	for i := 0; i <= int(flags&3); i++ {
		id, err := uvarint(hdr, &p)
		if err != nil {
			return nil, err
		}
		n, err := uvarint(hdr, &p)
		if err != nil || p+int(n) > hdrLen-4 {
			return nil, fmt.Errorf("xz: bad filter properties: %v", err)
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
			return nil, fmt.Errorf("xz: unsupported filter %#x (kernels use x86 BCJ and LZMA2)", id)
		}
	}
	if dictCap == 0 {
		return nil, errors.New("xz: no LZMA2 filter")
	}

	// Bound the dictionary by the output: LZMA2 never looks further back.
	dictCap = max(min(dictCap, int(size)), lzma.MinDictCap)
	r, err := lzma.Reader2Config{DictCap: dictCap}.NewReader2(bytes.NewReader(blk[hdrLen:]))
	if err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	out := bytes.NewBuffer(make([]byte, 0, size))
	if _, err := io.Copy(out, r); err != nil {
		return nil, fmt.Errorf("xz: lzma2: %w", err)
	}
	data := out.Bytes()
	if uint64(len(data)) != size {
		return nil, fmt.Errorf("xz: %d bytes decoded, the index says %d", len(data), size)
	}
	if bcj {
		bcjX86Decode(data)
	}
	if check == 1 {
		// The check follows the compressed data and its padding to 4 bytes.
		compressed := int(unpadded) - hdrLen - checkLen
		at := headerLen + hdrLen + (compressed+3)&^3
		if compressed < 0 || at+4 > indexStart {
			return nil, errors.New("xz: bad block size")
		}
		if crc32.ChecksumIEEE(data) != binary.LittleEndian.Uint32(stream[at:]) {
			return nil, errors.New("xz: CRC32 mismatch")
		}
	}
	return data, nil
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

// bcjX86Decode undoes xz's x86 BCJ filter in place over a whole buffer that
// starts at offset 0: relative CALL/JMP targets the encoder made absolute
// become relative again. It follows xz-embedded's bcj_x86 (public domain).
func bcjX86Decode(buf []byte) {
	allowed := [8]bool{true, true, true, false, true, false, false, false}
	bitNum := [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}
	msb := func(b byte) bool { return b == 0x00 || b == 0xff }
	if len(buf) <= 4 {
		return
	}
	size := uint(len(buf) - 4)
	prevPos := ^uint(0)
	var prevMask uint32
	for i := uint(0); i < size; i++ {
		if buf[i]&0xfe != 0xe8 {
			continue
		}
		prevPos = i - prevPos
		if prevPos > 3 {
			prevMask = 0
		} else {
			prevMask = (prevMask << (prevPos - 1)) & 7
			if prevMask != 0 {
				b := buf[i+4-uint(bitNum[prevMask])]
				if !allowed[prevMask] || msb(b) {
					prevPos = i
					prevMask = prevMask<<1 | 1
					continue
				}
			}
		}
		prevPos = i
		if !msb(buf[i+4]) {
			prevMask = prevMask<<1 | 1
			continue
		}
		src := binary.LittleEndian.Uint32(buf[i+1:])
		var dest uint32
		for {
			dest = src - uint32(i+5)
			if prevMask == 0 {
				break
			}
			j := bitNum[prevMask] * 8
			if !msb(byte(dest >> (24 - j))) {
				break
			}
			src = dest ^ (1<<(32-j) - 1)
		}
		dest &= 0x01ffffff
		dest |= -(dest & 0x01000000)
		binary.LittleEndian.PutUint32(buf[i+1:], dest)
		i += 4
	}
}
