package nsbox

import (
	"bytes"
	"encoding/binary"
)

// pauseCodeAMD64 is the whole infra process for x86-64 Linux, as machine
// code: set SIGCHLD to SIG_IGN, so that the kernel reaps every orphan the
// PID namespace hands to its init, then pause(2) forever. The infra process
// is ended with SIGKILL, which a namespace's init cannot ignore from its
// parent namespace.
//
//	 0: b8 0d 00 00 00        mov    eax, 13          ; rt_sigaction
//	 5: bf 11 00 00 00        mov    edi, 17          ; SIGCHLD
//	10: 48 8d 35 17 00 00 00  lea    rsi, [rip+23]    ; &act (offset 40)
//	17: 31 d2                 xor    edx, edx         ; no old action
//	19: 41 ba 08 00 00 00     mov    r10d, 8          ; sizeof(sigset_t)
//	25: 0f 05                 syscall
//	27: b8 22 00 00 00        mov    eax, 34          ; pause
//	32: 0f 05                 syscall
//	34: eb f7                 jmp    27
//	36: 00 00 00 00           (padding)
//	40: act: handler SIG_IGN (1), flags 0, restorer 0, mask 0
var pauseCodeAMD64 = []byte{
	0xb8, 0x0d, 0x00, 0x00, 0x00,
	0xbf, 0x11, 0x00, 0x00, 0x00,
	0x48, 0x8d, 0x35, 0x17, 0x00, 0x00, 0x00,
	0x31, 0xd2,
	0x41, 0xba, 0x08, 0x00, 0x00, 0x00,
	0x0f, 0x05,
	0xb8, 0x22, 0x00, 0x00, 0x00,
	0x0f, 0x05,
	0xeb, 0xf7,
	0x00, 0x00, 0x00, 0x00,
	0x01, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0,
}

// PauseProgram is a static ELF executable of the infra process for arch (a
// GOARCH), or nil where cradle has none (it then runs `cradle pause`, the
// same in Go at about 10 MB PSS; this one costs a page or two).
func PauseProgram(arch string) []byte {
	if arch != "amd64" {
		return nil
	}
	return staticELF(0x3e, pauseCodeAMD64) // EM_X86_64
}

// staticELF wraps code in a minimal ELF64 little-endian executable: the
// header and one read+execute PT_LOAD segment covering the whole file,
// entered at the code.
func staticELF(machine uint16, code []byte) []byte {
	const (
		base    = 0x400000
		ehsize  = 64
		phsize  = 56
		headers = ehsize + phsize
	)
	size := uint64(headers + len(code))
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	for _, v := range []any{
		uint16(2), machine, uint32(1), // ET_EXEC, machine, EV_CURRENT
		uint64(base + headers), uint64(ehsize), uint64(0), // entry, phoff, shoff
		uint32(0), uint16(ehsize), uint16(phsize), uint16(1), // flags, ehsize, phentsize, phnum
		uint16(0), uint16(0), uint16(0), // shentsize, shnum, shstrndx
		uint32(1), uint32(5), uint64(0), // PT_LOAD, PF_R|PF_X, offset
		uint64(base), uint64(base), size, size, uint64(0x1000), // vaddr, paddr, filesz, memsz, align
	} {
		_ = binary.Write(&b, le, v)
	}
	b.Write(code)
	return b.Bytes()
}
