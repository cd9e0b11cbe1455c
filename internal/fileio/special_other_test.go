//go:build unix && !linux

package fileio

import "testing"

// deviceCases makes no devices: mknod's arguments differ by system.
func deviceCases(*testing.T, string) []specialCase { return nil }
