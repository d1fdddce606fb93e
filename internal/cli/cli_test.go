package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"syscall"
	"testing"
)

func TestFirstLine(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("plain"), "plain"},
		{errors.New("ts.Add() failed: shape mismatch\nException raised from ...\n#0 0x1"), "ts.Add() failed: shape mismatch"},
		{errors.New("\n  \n  indented first\nsecond"), "indented first"},
		{errors.New(" \n "), ""},
	} {
		if got := FirstLine(tc.err); got != tc.want {
			t.Errorf("FirstLine(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestParseAndRequired(t *testing.T) {
	newFS := func() (*flag.FlagSet, *string) {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		return fs, fs.String("out", "", "output")
	}
	for _, tc := range []struct {
		name     string
		args     []string
		parseErr string // "" nil, "help", "usage"
		required string // Required's message, "" for nil
	}{
		{"set", []string{"-out", "f"}, "", ""},
		{"missing", nil, "", "-out is required"},
		{"unknown flag", []string{"-nope"}, "usage", ""},
		{"help", []string{"-h"}, "help", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, _ := newFS()
			var stderr bytes.Buffer
			err := Parse(fs, tc.args, &stderr)
			var ue UsageError
			switch tc.parseErr {
			case "":
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
			case "help":
				if !errors.Is(err, flag.ErrHelp) {
					t.Fatalf("Parse = %v, want flag.ErrHelp", err)
				}
				return
			case "usage":
				if !errors.As(err, &ue) || ue.Msg != "" || stderr.Len() == 0 {
					t.Fatalf("Parse = %#v (stderr %q), want an empty UsageError after the flag package's message", err, stderr.String())
				}
				return
			}
			err = Required(fs, "out")
			switch {
			case tc.required == "" && err != nil:
				t.Errorf("Required: %v", err)
			case tc.required != "" && (!errors.As(err, &ue) || ue.Msg != tc.required):
				t.Errorf("Required = %v, want UsageError %q", err, tc.required)
			}
		})
	}
}

func TestExit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		code   int
		stderr string
	}{
		{"ok", nil, 0, ""},
		{"help", flag.ErrHelp, 0, ""},
		{"wrapped help", fmt.Errorf("parse: %w", flag.ErrHelp), 0, ""},
		{"usage", Usagef("no text given"), 2, "clip tokenize: no text given\nrun \"clip tokenize -h\" for its flags\n"},
		{"usage already explained", UsageError{}, 2, ""},
		{"failure", errors.New("load x.pt: truncated\n#0 0x1 frame"), 1, "clip tokenize: load x.pt: truncated\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := Exit("clip", "tokenize", tc.err, &stderr); code != tc.code || stderr.String() != tc.stderr {
				t.Errorf("Exit = %d, stderr %q; want %d, %q", code, stderr.String(), tc.code, tc.stderr)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var sets Strings
	fs.Var(&sets, "set", "repeatable")
	if err := fs.Parse([]string{"-set", "a.b=1", "-set", "c.d=x y"}); err != nil {
		t.Fatal(err)
	}
	if len(sets) != 2 || sets[0] != "a.b=1" || sets[1] != "c.d=x y" || sets.String() != "a.b=1,c.d=x y" {
		t.Errorf("sets = %q (String %q)", []string(sets), sets.String())
	}
}

// TestInterruptsStatus: a signal cancels the context and turns a failed
// command's status into 128 + the signal; a command that succeeded keeps 0.
func TestInterruptsStatus(t *testing.T) {
	for _, tc := range []struct {
		sig        os.Signal
		code, want int
	}{
		{syscall.SIGINT, 1, 130},
		{syscall.SIGTERM, 1, 143},
		{syscall.SIGTERM, 0, 0},
		{nil, 1, 1},
	} {
		ch := make(chan os.Signal, 1)
		stopped := make(chan bool, 1)
		in := FromSignals(ch, func() { stopped <- true })
		if tc.sig != nil {
			ch <- tc.sig
			<-in.Context().Done()
			if !<-stopped {
				t.Error("handler not removed after the first signal")
			}
		}
		if got := in.Status(tc.code); got != tc.want {
			t.Errorf("signal %v, code %d: status %d, want %d", tc.sig, tc.code, got, tc.want)
		}
		in.Stop()
		if in.Context().Err() == nil {
			t.Error("Stop did not release the context")
		}
	}
}
