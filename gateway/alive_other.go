//go:build !unix

package gateway

// alive cannot peek on this platform: a connection the instance closed is
// found when a request fails on it (and is replayed when it may be).
func (c *fconn) alive() bool { return true }
