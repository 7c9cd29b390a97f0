"""A 1-D convolutional classifier for sequences/signals (N, C, L): Conv1d-BN-ReLU blocks with
pooling, global average pooling over time, and a linear head.  Works for any L >= 2**(blocks-1)."""
from .. import nn
from .weights import register


class Conv1dClassifier(nn.Module):
    def __init__(self, num_classes=10, in_channels=1, channels=(32, 64, 128), kernel_size=5, dropout=0.0):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"Conv1dClassifier: kernel_size must be odd, got {kernel_size}")
        layers, c = [], in_channels
        for i, co in enumerate(channels):
            layers += [nn.Conv1d(c, co, kernel_size, padding=kernel_size // 2, bias=False), nn.BatchNorm1d(co),
                       nn.ReLU(inplace=True)]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool1d(2))
            c = co
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        if x.ndim != 3:
            raise ValueError(f"Conv1dClassifier: expected (N, C, L), got {x.shape}")
        x = self.pool(self.features(x)).flatten(1)
        return self.fc(self.dropout(x))


@register
def conv1d_classifier(num_classes=10, in_channels=1, channels=(32, 64, 128), kernel_size=5, dropout=0.0):
    return Conv1dClassifier(num_classes, in_channels, tuple(channels), kernel_size, dropout)
