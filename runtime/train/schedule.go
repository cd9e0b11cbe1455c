package train

import (
	"fmt"
	"math"
)

// A Schedule gives the learning rate of each epoch (counted from 0) from
// the optimizer's base rate, as a torch.optim.lr_scheduler stepped once
// after every epoch does. Fit refuses a schedule whose Check method (when
// it has one) fails, or that gives an epoch a NaN, infinite or negative
// rate, before training.
type Schedule interface {
	LR(base float64, epoch int) float64
}

// checkSchedule runs s's Check, if it has one, and checks the rates of
// epochs from to to-1.
func checkSchedule(s Schedule, base float64, from, to int) error {
	if c, ok := s.(interface{ Check() error }); ok {
		if err := c.Check(); err != nil {
			return err
		}
	}
	for e := from; e < to; e++ {
		if lr := s.LR(base, e); !(lr >= 0 && !math.IsInf(lr, 1)) {
			return fmt.Errorf("schedule %T%+v gives epoch %d the learning rate %v", s, s, e+1, lr)
		}
	}
	return nil
}

// Constant keeps the base learning rate.
type Constant struct{}

// LR returns base.
func (Constant) LR(base float64, _ int) float64 { return base }

// StepLR multiplies the rate by Gamma every StepSize epochs:
// base * Gamma^floor(epoch/StepSize), torch's StepLR.
type StepLR struct {
	StepSize int
	Gamma    float64
}

// Check reports a step size below 1 or a gamma that is NaN, infinite or
// negative.
func (s StepLR) Check() error {
	if s.StepSize < 1 {
		return fmt.Errorf("step schedule: the step size is %d, want at least 1 epoch", s.StepSize)
	}
	if !(s.Gamma >= 0 && !math.IsInf(s.Gamma, 1)) {
		return fmt.Errorf("step schedule: gamma is %v, want a finite number of at least 0", s.Gamma)
	}
	return nil
}

// LR returns the rate of the epoch.
func (s StepLR) LR(base float64, epoch int) float64 {
	if s.StepSize <= 0 {
		return base
	}
	return base * math.Pow(s.Gamma, float64(epoch/s.StepSize))
}

// CosineAnnealingLR follows half a cosine from the base rate down to EtaMin
// over TMax epochs: EtaMin + (base - EtaMin) * (1 + cos(pi * epoch / TMax)) / 2,
// the closed form of torch's CosineAnnealingLR (which computes the same
// curve recursively, and likewise climbs back up after TMax).
type CosineAnnealingLR struct {
	TMax   int
	EtaMin float64
}

// Check reports a TMax below 1 or an EtaMin that is NaN, infinite or
// negative.
func (s CosineAnnealingLR) Check() error {
	if s.TMax < 1 {
		return fmt.Errorf("cosine schedule: TMax is %d, want at least 1 epoch", s.TMax)
	}
	if !(s.EtaMin >= 0 && !math.IsInf(s.EtaMin, 1)) {
		return fmt.Errorf("cosine schedule: the minimum rate is %v, want a finite number of at least 0", s.EtaMin)
	}
	return nil
}

// LR returns the rate of the epoch.
func (s CosineAnnealingLR) LR(base float64, epoch int) float64 {
	if s.TMax <= 0 {
		return base
	}
	return s.EtaMin + (base-s.EtaMin)*(1+math.Cos(math.Pi*float64(epoch)/float64(s.TMax)))/2
}
