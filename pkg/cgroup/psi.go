package cgroup

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// readPSI reads the pressure files of the cgroup2 directory dir; a
// resource whose file is missing or unreadable is left nil.
func readPSI(dir string) PSI {
	return PSI{
		CPU:    readPressure(filepath.Join(dir, "cpu.pressure")),
		Memory: readPressure(filepath.Join(dir, "memory.pressure")),
		IO:     readPressure(filepath.Join(dir, "io.pressure")),
	}
}

func readPressure(path string) *Pressure {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	p, ok := parsePressure(bufio.NewScanner(f))
	if !ok {
		return nil
	}
	return p
}

// parsePressure parses a pressure file:
//
//	some avg10=0.12 avg60=0.03 avg300=0.00 total=12345
//	full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//
// total is in microseconds.
func parsePressure(sc *bufio.Scanner) (*Pressure, bool) {
	var p Pressure
	seen := false
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		var d *PressureData
		switch fields[0] {
		case "some":
			d = &p.Some
		case "full":
			d = &p.Full
		default:
			return nil, false
		}
		for _, kv := range fields[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, false
			}
			var err error
			switch k {
			case "avg10":
				d.Avg10, err = strconv.ParseFloat(v, 64)
			case "avg60":
				d.Avg60, err = strconv.ParseFloat(v, 64)
			case "avg300":
				d.Avg300, err = strconv.ParseFloat(v, 64)
			case "total":
				var us uint64
				us, err = strconv.ParseUint(v, 10, 64)
				d.TotalNanos = us * 1000
			}
			if err != nil {
				return nil, false
			}
		}
		seen = true
	}
	return &p, seen && sc.Err() == nil
}
