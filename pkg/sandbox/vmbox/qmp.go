package vmbox

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
)

// qmpExecute connects to QEMU's QMP socket, negotiates capabilities and
// runs one command. For "quit", QEMU may close the socket before
// answering: that counts as success.
func qmpExecute(ctx context.Context, socket, command string) error {
	q, err := qmpDial(ctx, socket)
	if err != nil {
		return err
	}
	defer q.Close()
	_, err = q.execute(command, nil)
	return err
}

// qmpConn is one QMP session: commands run one at a time; events are
// skipped.
type qmpConn struct {
	conn net.Conn
	r    *bufio.Reader
	stop func() bool
}

// qmpDial connects to QEMU's QMP socket and negotiates capabilities. The
// session ends with ctx or Close.
func qmpDial(ctx context.Context, socket string) (*qmpConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("qmp: %w", err)
	}
	q := &qmpConn{conn: conn, r: bufio.NewReader(conn)}
	q.stop = context.AfterFunc(ctx, func() { _ = conn.Close() })
	if m, err := q.read(); err != nil || m.QMP == nil {
		q.Close()
		return nil, fmt.Errorf("qmp greeting: %v", err)
	}
	if _, err := q.execute("qmp_capabilities", nil); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

// Close ends the session.
func (q *qmpConn) Close() {
	q.stop()
	_ = q.conn.Close()
}

type qmpReply struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string `json:"event"`
}

func (q *qmpConn) read() (qmpReply, error) {
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return qmpReply{}, err
		}
		var m qmpReply
		if err := json.Unmarshal(line, &m); err != nil {
			return qmpReply{}, fmt.Errorf("qmp: %w", err)
		}
		if m.Event != "" {
			continue
		}
		return m, nil
	}
}

// execute runs command with args (nil: none) and returns its reply's
// "return". For "quit", QEMU may close the socket before answering: that
// counts as success.
func (q *qmpConn) execute(command string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	m, err := q.read()
	if err != nil {
		if command == "quit" && !errors.Is(err, net.ErrClosed) {
			return nil, nil // QEMU exited before answering
		}
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	if m.Error != nil {
		return nil, fmt.Errorf("qmp %s: %s: %s", command, m.Error.Class, m.Error.Desc)
	}
	return m.Return, nil
}
