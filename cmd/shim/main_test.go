//go:build !guest

package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	ctx := context.Background()
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"config", "default"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile("../../configs/cradle.toml")
	if err != nil || out.String() != string(golden) {
		t.Errorf("cradle config default differs from configs/cradle.toml (%v)", err)
	}
	for _, args := range [][]string{nil, {"bogus"}, {"config"}, {"images"}, {"images", "bogus", "--config", "/nonexistent.toml"}} {
		if err := run(ctx, args, &out, &errOut); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
	out.Reset()
	if err := run(ctx, []string{"version"}, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "cradle v") {
		t.Errorf("version: %q, %v", out.String(), err)
	}
}
