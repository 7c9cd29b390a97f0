"""CNN-RNN: a convolutional trunk, the feature map read column by column as a sequence,
an LSTM or GRU over that sequence, and a linear classifier (CRNN-style line/digit readers)."""
from .. import nn
from .weights import register


class CNNRNN(nn.Module):
    """(N, C, H, W) -> conv trunk -> (N, C', H', W') -> sequence of W' columns of C'*H' features
    -> LSTM/GRU (batch_first) -> last step (both directions' finals when bidirectional) -> Linear."""

    def __init__(self, num_classes=10, in_channels=1, rnn="lstm", hidden_size=64, num_layers=1,
                 bidirectional=False, channels=(16, 32), input_height=32, dropout=0.0):
        super().__init__()
        if rnn not in ("lstm", "gru"):
            raise ValueError(f"CNNRNN: rnn must be 'lstm' or 'gru', got {rnn!r}")
        layers, c = [], in_channels
        for co in channels:
            layers += [nn.Conv2d(c, co, 3, padding=1, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2, 2)]
            c = co
        self.features = nn.Sequential(*layers)
        self.feature_height = input_height // (2 ** len(channels))
        if self.feature_height < 1:
            raise ValueError(f"CNNRNN: input_height {input_height} is too small for {len(channels)} pooling stages")
        cls = nn.LSTM if rnn == "lstm" else nn.GRU
        self.rnn = cls(c * self.feature_height, hidden_size, num_layers=num_layers, batch_first=True,
                       bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.classifier = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def sequence(self, x):
        """The column sequence (N, W', C'*H') the RNN reads."""
        f = self.features(x)
        n, c, h, w = f.shape
        if h != self.feature_height:
            raise ValueError(f"CNNRNN: built for input height giving feature height {self.feature_height}, "
                             f"got {h} (input {x.shape})")
        return f.permute(0, 3, 1, 2).reshape(n, w, c * h)

    def forward(self, x):
        out, state = self.rnn(self.sequence(x))
        h_n = state[0] if isinstance(state, tuple) else state
        if self.rnn.bidirectional:  # final forward and backward states of the last layer
            from ..ops import cat

            last = cat([h_n[-2], h_n[-1]], dim=1)
        else:
            last = h_n[-1]
        return self.classifier(last)


@register
def cnn_rnn(num_classes=10, in_channels=1, rnn="lstm", hidden_size=64, num_layers=1, bidirectional=False,
            channels=(16, 32), input_height=32, dropout=0.0):
    return CNNRNN(num_classes, in_channels, rnn, hidden_size, num_layers, bidirectional, channels, input_height,
                  dropout)
