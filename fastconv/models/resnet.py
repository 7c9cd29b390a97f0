"""ResNets: torchvision's ImageNet family (18/34/50/101/152, ResNeXt, wide) and the CIFAR
ResNets of He et al. (20/32/44/56/110, 3x3 stem, three stages of 16/32/64 channels)."""
from .. import functional as F
from .. import nn
from ..nn import init
from ..ops import cat
from ..tensor import Tensor
from .weights import register


def bn_act(bn, x, residual=None, act=None):
    """``act(bn(x) + residual)``, ``act`` a ReLU module or None for ReLU.

    One fused batch-norm/add/ReLU kernel pair (``BatchNorm2d.forward_act``) when ``bn`` is a
    plain BatchNorm2d and the activation a plain ReLU; otherwise (a subclass, a replaced
    module such as Identity after conv-bn folding) the modules are called one by one.
    """
    if type(bn).forward is nn.BatchNorm2d.forward and isinstance(bn, nn.BatchNorm2d) and (
            act is None or type(act) is nn.ReLU):
        return bn.forward_act(x, residual, relu=True)
    y = bn(x)
    if residual is not None:
        y = y + residual
    return F.relu(y) if act is None else act(y)


def conv3x3(in_planes, out_planes, stride=1, groups=1, dilation=1):
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=dilation, groups=groups, bias=False,
                     dilation=dilation)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise ValueError("BasicBlock does not support dilation > 1")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = bn_act(self.bn1, self.conv1(x), act=self.relu)
        return bn_act(self.bn2, self.conv2(out), identity, act=self.relu)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = bn_act(self.bn1, self.conv1(x), act=self.relu)
        out = bn_act(self.bn2, self.conv2(out), act=self.relu)
        return bn_act(self.bn3, self.conv3(out), identity, act=self.relu)


def _init_resnet(model, zero_init_residual):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            init.ones_(m.weight)
            init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, Bottleneck):
                init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                init.zeros_(m.bn2.weight)


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, in_channels=3, zero_init_residual=False, groups=1,
                 width_per_group=64):
        super().__init__()
        self.inplanes, self.dilation = 64, 1
        self.groups, self.base_width = groups, width_per_group
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        _init_resnet(self, zero_init_residual)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, self.dilation)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups, base_width=self.base_width,
                                dilation=self.dilation))
        return nn.Sequential(*layers)

    def forward_features(self, x):
        x = self.maxpool(bn_act(self.bn1, self.conv1(x), act=self.relu))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def forward(self, x):
        return self.fc(self.forward_features(x))


@register
def resnet18(num_classes=1000, in_channels=3, **kw):
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, **kw)


@register
def resnet34(num_classes=1000, in_channels=3, **kw):
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, **kw)


@register
def resnet50(num_classes=1000, in_channels=3, **kw):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, **kw)


@register
def resnet101(num_classes=1000, in_channels=3, **kw):
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, in_channels, **kw)


@register
def resnet152(num_classes=1000, in_channels=3, **kw):
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, in_channels, **kw)


@register
def resnext50_32x4d(num_classes=1000, in_channels=3, **kw):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, groups=32, width_per_group=4, **kw)


@register
def wide_resnet50_2(num_classes=1000, in_channels=3, **kw):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, width_per_group=128, **kw)


# ---- CIFAR ResNets (He et al. 2016, section 4.2) ----------------------------------------------

class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, planes):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x):
        x = x[:, :, ::2, ::2]
        n, _, h, w = x.shape
        z = Tensor(x.xp.zeros((n, self.pad, h, w), dtype=x.dtype))
        return cat([z, x, z], dim=1)


class CifarBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, shortcut="A"):
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                self.downsample = PadShortcut(planes)
            else:
                self.downsample = nn.Sequential(conv1x1(in_planes, planes, stride), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = bn_act(self.bn1, self.conv1(x))
        return bn_act(self.bn2, self.conv2(out), x if self.downsample is None else self.downsample(x))


class CifarResNet(nn.Module):
    """6n+2 layers; ``shortcut='A'`` (parameter-free, the paper's CIFAR choice) or 'B' (1x1 projection)."""

    def __init__(self, num_blocks, num_classes=10, in_channels=3, shortcut="A"):
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ValueError(f"CifarResNet: shortcut must be 'A' or 'B', got {shortcut!r}")
        self.in_planes = 16
        self.conv1 = conv3x3(in_channels, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, num_blocks, 1, shortcut)
        self.layer2 = self._make_layer(32, num_blocks, 2, shortcut)
        self.layer3 = self._make_layer(64, num_blocks, 2, shortcut)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                init.kaiming_normal_(m.weight)

    def _make_layer(self, planes, n, stride, shortcut):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(CifarBasicBlock(self.in_planes, planes, s, shortcut))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward_features(self, x):
        x = bn_act(self.bn1, self.conv1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.avgpool(x).flatten(1)

    def forward(self, x):
        return self.fc(self.forward_features(x))


@register
def resnet20(num_classes=10, in_channels=3, shortcut="A"):
    return CifarResNet(3, num_classes, in_channels, shortcut)


@register
def resnet32(num_classes=10, in_channels=3, shortcut="A"):
    return CifarResNet(5, num_classes, in_channels, shortcut)


@register
def resnet44(num_classes=10, in_channels=3, shortcut="A"):
    return CifarResNet(7, num_classes, in_channels, shortcut)


@register
def resnet56(num_classes=10, in_channels=3, shortcut="A"):
    return CifarResNet(9, num_classes, in_channels, shortcut)


@register
def resnet110(num_classes=10, in_channels=3, shortcut="A"):
    return CifarResNet(18, num_classes, in_channels, shortcut)
