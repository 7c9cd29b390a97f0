"""VGG-11/13/16/19 with and without batch norm, torchvision's layout and initialisation."""
from .. import nn
from ..nn import init
from .weights import register

CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_layers(cfg, batch_norm=False, in_channels=3):
    layers = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """torchvision's VGG; ``hidden_features``, ``pool_size`` and ``feature_channels`` (defaults 4096, 7, 512)
    shrink the classifier for small variants."""

    def __init__(self, features, num_classes=1000, init_weights=True, dropout=0.5, hidden_features=4096, pool_size=7,
                 feature_channels=512):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((pool_size, pool_size))
        h = hidden_features
        self.classifier = nn.Sequential(
            nn.Linear(feature_channels * pool_size * pool_size, h), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(h, h), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(h, num_classes),
        )
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    init.ones_(m.weight)
                    init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    init.normal_(m.weight, 0, 0.01)
                    init.zeros_(m.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def _vgg(cfg, bn, num_classes, in_channels, **kw):
    if kw.get("init_weights", True):  # every layer is re-initialised: skip torch's default draw
        with init.skip_default_init():
            return VGG(make_layers(CFGS[cfg], bn, in_channels), num_classes=num_classes, **kw)
    return VGG(make_layers(CFGS[cfg], bn, in_channels), num_classes=num_classes, **kw)


@register
def vgg11(num_classes=1000, in_channels=3, **kw):
    return _vgg("A", False, num_classes, in_channels, **kw)


@register
def vgg11_bn(num_classes=1000, in_channels=3, **kw):
    return _vgg("A", True, num_classes, in_channels, **kw)


@register
def vgg13(num_classes=1000, in_channels=3, **kw):
    return _vgg("B", False, num_classes, in_channels, **kw)


@register
def vgg13_bn(num_classes=1000, in_channels=3, **kw):
    return _vgg("B", True, num_classes, in_channels, **kw)


@register
def vgg16(num_classes=1000, in_channels=3, **kw):
    return _vgg("D", False, num_classes, in_channels, **kw)


@register
def vgg16_bn(num_classes=1000, in_channels=3, **kw):
    return _vgg("D", True, num_classes, in_channels, **kw)


@register
def vgg19(num_classes=1000, in_channels=3, **kw):
    return _vgg("E", False, num_classes, in_channels, **kw)


@register
def vgg19_bn(num_classes=1000, in_channels=3, **kw):
    return _vgg("E", True, num_classes, in_channels, **kw)
