//go:build unix

package gateway

import "syscall"

// alive reports whether the idle connection c may still carry a request: no
// end of stream, error or stray byte is waiting on it. It peeks without
// blocking, one system call and no allocation (the raw connection and the
// peek function are made once per connection).
func (c *fconn) alive() bool {
	if c.peek == nil {
		sc, ok := c.conn.(syscall.Conn)
		if !ok {
			return true
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return false
		}
		c.raw, c.peek = raw, c.peekFD
	}
	c.peekOK = false
	if err := c.raw.Read(c.peek); err != nil {
		return false
	}
	return c.peekOK
}

// peekFD is the raw read of alive. Nothing to read (EAGAIN) is the healthy
// case; a byte, the end of the stream or an error mean the connection is
// done. It never asks to wait.
func (c *fconn) peekFD(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), c.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	c.peekOK = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
	return true
}
