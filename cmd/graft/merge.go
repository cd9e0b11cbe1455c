package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/graft-dev/graft/attacks"
	"github.com/graft-dev/graft/internal/fileio"
)

func init() {
	register(&command{
		name:  "merge-reports",
		short: "combine the shards' robustness reports into the whole report",
		args:  "-o REPORT_DIR SHARD_DIR...",
		summary: "Combine the reports of graft robustness --shard I/N (one folder, or report.json, per shard; all N of them,\n" +
			"in any order) into the report a single run writes: report.json, report.md, accuracy_vs_eps.png and\n" +
			"examples.png, every number and picture bit for bit the single run's (the time is the shards' total).\n" +
			"Shards of another model (SHA-256), other data (fingerprint), other settings or another shard count are\n" +
			"refused, naming the difference, as are a missing shard and a shard given twice.",
		run: runMergeReports,
	})
}

func runMergeReports(args []string, stdout io.Writer) error {
	c := lookup("merge-reports")
	fs := newFlags(c, stdout)
	var out string
	fs.StringVar(&out, "o", "", "report `folder` (required; created if missing)")
	fs.StringVar(&out, "out", "", "report `folder`, same as -o")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case out == "":
		return usage("-o REPORT_DIR is required")
	case len(pos) == 0:
		return usage("no shard reports: give the folders graft robustness --shard wrote")
	}
	var parts []*attacks.Report
	plan := &fileio.Plan{}
	for _, p := range pos {
		r, err := attacks.ReadReport(p)
		if err != nil {
			return err
		}
		parts = append(parts, r)
		plan.Input(p, "a shard's report")
	}
	plan.OutputDir(out, "-o")
	for _, f := range reportFiles(false) {
		plan.Output(filepath.Join(out, f), "")
	}
	if err := plan.Check(); err != nil {
		return err
	}
	r, err := attacks.Merge(parts...)
	if err != nil {
		return err
	}
	lock, err := fileio.LockDir(out)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if err := r.WriteDir(out); err != nil {
		return err
	}
	printSweep(stdout, r)
	fmt.Fprintf(stdout, "merged %d shards; wrote %s\n", len(parts), filepath.Join(out, attacks.ReportMarkdown))
	return nil
}
