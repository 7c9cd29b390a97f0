"""torch.nn rebuilds of fastconv's reference models (no torchvision needed), shared by the
model tests (weights copied, logits compared) and the whole-model CPU benchmark."""
import torch


class TBasic(torch.nn.Module):
    expansion = 1

    def __init__(self, inp, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(inp, planes, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(planes)
        self.relu = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + idt)


class TResNet(torch.nn.Module):
    """torchvision's ResNet with BasicBlocks, rebuilt from torch.nn."""

    def __init__(self, layers, num_classes):
        super().__init__()
        self.inplanes = 64
        self.conv1 = torch.nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(64)
        self.relu = torch.nn.ReLU()
        self.maxpool = torch.nn.MaxPool2d(3, 2, 1)
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            setattr(self, f"layer{i + 1}", self._make(planes, n, 1 if i == 0 else 2))
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(512, num_classes)

    def _make(self, planes, n, stride):
        ds = None
        if stride != 1 or self.inplanes != planes:
            ds = torch.nn.Sequential(torch.nn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
                                     torch.nn.BatchNorm2d(planes))
        blocks = [TBasic(self.inplanes, planes, stride, ds)]
        self.inplanes = planes
        blocks += [TBasic(planes, planes) for _ in range(1, n)]
        return torch.nn.Sequential(*blocks)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TLeNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        A, P = torch.nn.Tanh, torch.nn.AvgPool2d
        self.features = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 5), A(), P(2, 2), torch.nn.Conv2d(6, 16, 5), A(),
                                            P(2, 2), torch.nn.Conv2d(16, 120, 5), A())
        self.classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(120, 84), A(),
                                              torch.nn.Linear(84, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class TCifarBlock(torch.nn.Module):
    def __init__(self, inp, planes, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(inp, planes, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(planes)
        self.conv2 = torch.nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(planes)
        self.pad = planes // 4 if (stride != 1 or inp != planes) else None

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        sc = x if self.pad is None else torch.nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return torch.relu(out + sc)


class TCifarResNet(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(16)
        c = 16
        for i, planes in enumerate((16, 32, 64)):
            blocks = []
            for s in [1 if i == 0 else 2] + [1] * (n - 1):
                blocks.append(TCifarBlock(c, planes, s))
                c = planes
            setattr(self, f"layer{i + 1}", torch.nn.Sequential(*blocks))
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean((2, 3)))
