package train

import "math"

// A Schedule gives the learning rate of each epoch (counted from 0) from
// the optimizer's base rate, as a torch.optim.lr_scheduler stepped once
// after every epoch does.
type Schedule interface {
	LR(base float64, epoch int) float64
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

// LR returns the rate of the epoch.
func (s CosineAnnealingLR) LR(base float64, epoch int) float64 {
	if s.TMax <= 0 {
		return base
	}
	return s.EtaMin + (base-s.EtaMin)*(1+math.Cos(math.Pi*float64(epoch)/float64(s.TMax)))/2
}
