"""LeNet-5 (LeCun et al. 1998): C1-S2-C3-S4-C5-F6-output.

The classic form uses tanh and average-pool subsampling on a 32x32 input
(``c1_padding=2`` accepts 28x28 MNIST); ``lenet5_relu`` is the modern
ReLU/max-pool variant.  C5 is a 5x5 convolution to 120 maps of 1x1.
"""
from .. import nn
from .weights import register

_ACTS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
_POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class LeNet5(nn.Module):
    def __init__(self, num_classes=10, in_channels=1, activation="tanh", pool="avg", c1_padding=0):
        super().__init__()
        if activation not in _ACTS or pool not in _POOLS:
            raise ValueError(f"LeNet5: activation must be one of {sorted(_ACTS)} and pool one of {sorted(_POOLS)}, "
                             f"got {activation!r}, {pool!r}")
        act, pl = _ACTS[activation], _POOLS[pool]
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=c1_padding), act(), pl(2, 2),   # C1, S2
            nn.Conv2d(6, 16, 5), act(), pl(2, 2),                                # C3, S4
            nn.Conv2d(16, 120, 5), act(),                                        # C5
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(120, 84), act(), nn.Linear(84, num_classes))  # F6, out

    def forward(self, x):
        ph, pw = self.features[0].padding
        if x.ndim != 4 or x.shape[2] + 2 * ph != 32 or x.shape[3] + 2 * pw != 32:
            raise ValueError(f"LeNet5: expected a (N, C, 32, 32) input (28x28 with c1_padding=2), got {x.shape}")
        return self.classifier(self.features(x))


@register
def lenet5(num_classes=10, in_channels=1, activation="tanh", pool="avg", c1_padding=0):
    """Classic LeNet-5: tanh, average-pool subsampling, 32x32 input (61,706 parameters for 10 classes)."""
    return LeNet5(num_classes, in_channels, activation, pool, c1_padding)


@register
def lenet5_relu(num_classes=10, in_channels=1, c1_padding=0):
    """LeNet-5 with ReLU and max pooling."""
    return LeNet5(num_classes, in_channels, "relu", "max", c1_padding)
