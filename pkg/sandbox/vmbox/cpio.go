package vmbox

import (
	"fmt"
	"io"
	"strings"
)

// cpioWriter writes the "newc" cpio format the kernel unpacks into its
// initramfs (Documentation/driver-api/early-userspace/buffer-format.rst):
// a 110-byte ASCII header per entry, the NUL-terminated name and the data,
// each padded to 4 bytes; a TRAILER!!! entry ends it. All entries are owned
// by root with mtime 0, so that the archive depends on its content alone.
type cpioWriter struct {
	w   io.Writer
	n   int64 // bytes written, for padding
	ino uint32
	err error
}

// cpio mode bits (S_IF*).
const (
	cpioDir     = 0o040000
	cpioRegular = 0o100000
	cpioSymlink = 0o120000
)

func newCPIOWriter(w io.Writer) *cpioWriter { return &cpioWriter{w: w, ino: 1} }

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) header(name string, mode uint32, nlink uint32, size int64) {
	if c.err == nil && (strings.HasPrefix(name, "/") || size > 0xffffffff) {
		c.err = fmt.Errorf("cpio: bad entry %q (%d bytes)", name, size)
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.ino++
	c.write([]byte(hdr))
	c.write([]byte(name + "\x00"))
	c.pad()
}

// Dir adds a directory (name is relative: "dev", "lib/modules").
func (c *cpioWriter) Dir(name string, perm uint32) {
	c.header(name, cpioDir|perm, 2, 0)
}

// File adds a regular file of size bytes read from r.
func (c *cpioWriter) File(name string, perm uint32, size int64, r io.Reader) {
	c.header(name, cpioRegular|perm, 1, size)
	if c.err != nil {
		return
	}
	n, err := io.Copy(c.w, io.LimitReader(r, size))
	c.n += n
	if err == nil && n != size {
		err = fmt.Errorf("cpio: %s: %d of %d bytes", name, n, size)
	}
	c.err = err
	c.pad()
}

// Symlink adds a symbolic link.
func (c *cpioWriter) Symlink(name, target string) {
	c.header(name, cpioSymlink|0o777, 1, int64(len(target)))
	c.write([]byte(target))
	c.pad()
}

// Close writes the trailer; it does not close the underlying writer.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 1, 0)
	return c.err
}
