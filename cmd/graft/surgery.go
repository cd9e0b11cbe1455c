package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/surgery"
)

func init() {
	register(&command{
		name:  "surgery",
		short: "replace the head, freeze, re-initialise, put normalisation or a spatial transformer inside",
		args:  "MODEL.onnx [--replace-head K] [--head NODE] [--freeze SEL]... [--unfreeze SEL]... [--init RULE] [--normalize MEAN/STD] [--insert-stn] -o OUT.onnx",
		summary: "Edit a model: replace the classifier head, freeze or unfreeze parameters, re-initialise weights, put input normalisation inside, " +
			"put a spatial transformer (localisation net, affine grid, GridSample; starting at the identity) in front of the classifier. " +
			"Selectors: backbone, head, all, op:TYPE, prefix:P or a name glob. Init rules: pytorch, xavier, kaiming, dcgan, normal:M,S, uniform:L,H, constant:V.",
		run: runSurgery,
	})
}

func runSurgery(args []string, stdout io.Writer) error {
	c := lookup("surgery")
	fs := newFlags(c, stdout)
	k := fs.Int("replace-head", 0, "replace the classifier head with a new Linear(in_features, `K`)")
	head := fs.String("head", "", "the head's node `NAME`, when it cannot be found automatically")
	var freeze, unfreeze listFlag
	fs.Var(&freeze, "freeze", "remove parameters matching `SEL` from the trainable set (repeatable)")
	fs.Var(&unfreeze, "unfreeze", "add parameters matching `SEL` to the trainable set (repeatable)")
	initRule := fs.String("init", "", "re-initialise parameters by `RULE`")
	initSel := fs.String("init-select", "all", "which parameters --init applies to (`SEL`)")
	normalize := fs.String("normalize", "", "insert (x-mean)/std at the input: `MEAN/STD`, each a comma list (e.g. 0.485,0.456,0.406/0.229,0.224,0.225)")
	insertSTN := fs.Bool("insert-stn", false, "put a spatial transformer in front of the classifier, at the identity transform (after --init, so it keeps that)")
	seed := fs.Int64("seed", 1, "random `SEED` for new weights")
	out := fs.String("o", "", "output model `PATH` (required)")
	force := fs.Bool("force", false, "let -o replace a read-only file or the input model itself")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usage("want exactly one model file, got %d arguments", len(pos))
	}
	if *out == "" {
		return usage("-o OUT.onnx is required")
	}
	replace := false
	fs.Visit(func(f *flag.Flag) { replace = replace || f.Name == "replace-head" })
	if replace && *k < 1 {
		return usage("--replace-head %d: the new head needs at least 1 class", *k)
	}
	var edits []surgery.Edit
	if *k > 0 {
		edits = append(edits, surgery.ReplaceHead(*k, surgery.HeadOptions{Node: *head, Seed: *seed}))
	}
	if *normalize != "" {
		m, sd, ok := strings.Cut(*normalize, "/")
		if !ok {
			return usage("--normalize %q: want MEAN/STD, each a comma list", *normalize)
		}
		mean, std, err := parseMeanStdFlags(m, sd)
		if err != nil {
			return err
		}
		edits = append(edits, surgery.Normalize("", mean, std))
	}
	if *initRule != "" {
		rules, err := surgery.ParseInit(*initRule)
		if err != nil {
			return usage("%v", err)
		}
		sel, err := surgery.ParseSelector(*initSel)
		if err != nil {
			return usage("--init-select: %v", err)
		}
		edits = append(edits, surgery.Initialize(rules, sel, *seed))
	}
	if *insertSTN {
		edits = append(edits, named("--insert-stn", surgery.InsertSpatialTransformer(surgery.STNOptions{Seed: *seed})))
	}
	for _, s := range freeze {
		sel, err := surgery.ParseSelector(s)
		if err != nil {
			return usage("--freeze: %v", err)
		}
		edits = append(edits, named("--freeze "+s, surgery.Freeze(sel)))
	}
	for _, s := range unfreeze {
		sel, err := surgery.ParseSelector(s)
		if err != nil {
			return usage("--unfreeze: %v", err)
		}
		edits = append(edits, named("--unfreeze "+s, surgery.Unfreeze(sel)))
	}
	if len(edits) == 0 {
		return usage("nothing to do: give --replace-head, --freeze, --unfreeze, --init, --normalize or --insert-stn")
	}
	m, err := onnx.Load(pos[0])
	if err != nil {
		return err
	}
	plan := modelPlan(pos[0], m)
	var forced []fileio.Option
	if *force {
		forced = append(forced, fileio.Force())
	}
	plan.Output(*out, "-o", forced...)
	if err := plan.Check(); err != nil {
		return err
	}
	if err := surgery.Apply(m, edits...); err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if err := (onnx.SaveOptions{Force: *force}).Save(m, *out); err != nil {
		return err
	}
	r := inspect(*out, m)
	trainable, _ := surgery.Trainable(m)
	fmt.Fprintf(stdout, "wrote %s\n", *out)
	if r.Head != nil {
		fmt.Fprintf(stdout, "head:       %s (%s) %d -> %d\n", r.Head.Node, r.Head.Op, r.Head.InFeatures, r.Head.OutFeatures)
	}
	fmt.Fprintf(stdout, "trainable:  %d of %d parameter tensors\n", len(trainable), len(surgery.Params(m)))
	return nil
}

// named prefixes an edit's error with the flag that asked for it.
func named(what string, e surgery.Edit) surgery.Edit {
	return func(m *onnx.Model) error {
		if err := e(m); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
}
