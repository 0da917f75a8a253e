"""The common CNN zoo, written the way torchvision writes it (no torchvision needed).

ResNet-18/34/50 (He et al., CVPR 2016), MobileNetV2 (Sandler et al., CVPR 2018), VGG-11/16
(Simonyan & Zisserman, ICLR 2015), SqueezeNet 1.0 (Iandola et al., 2016) and AlexNet
(Krizhevsky et al., 2012, torchvision's one-GPU variant), and a tiny ResNet whose
identity skips the dataflow top streams (:class:`TinyResNet`). Forward passes use functional
``+=``, ``torch.flatten``, ``torch.cat`` and adaptive average pooling, as torchvision's
do, so lowering meets them as a user's own model. With the default options and 1000
classes the parameter counts equal torchvision's (resnet18 11,689,512; resnet34
21,797,672; resnet50 25,557,032; mobilenet_v2 3,504,872; vgg11 132,863,336; vgg16
138,357,544; squeezenet1_0 1,248,424; alexnet 61,100,840), and the module names match,
so a torchvision ``state_dict`` loads into them.

Inputs: the ResNets, MobileNetV2 and SqueezeNet run at 32x32 and 224x224 (any size their
strides leave at least 1x1). VGG and AlexNet end in an adaptive pool to 7x7 / 6x6, which
lowering can only express when the final map splits into equal windows (224x224: 7x7 and
6x6); their ``width`` / ``hidden`` options shrink them for tests.
"""

from collections.abc import Callable, Sequence

import torch
from torch import nn

from inq_hw.errors import ConfigError
from inq_hw.models import _check_io, _require_int, register_model

__all__ = ["Bottleneck", "InvertedResidual", "ResNet", "ResNetBasicBlock", "TinyResNet"]


def _bn_conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]


class ResNetBasicBlock(nn.Module):
    """torchvision's BasicBlock: ``out += identity`` and one ReLU module used twice."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (stride on the 3x3, "ResNet V1.5")."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet: 7x7 stem, padded max pool, four stages, global average pool."""

    def __init__(
        self,
        block: type[ResNetBasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        *,
        in_channels: int,
        num_classes: int,
        width: int = 64,
    ) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0], 1)
        self.layer2 = self._make_layer(block, width * 2, layers[1], 2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], 2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

    def _make_layer(
        self, block: type[ResNetBasicBlock] | type[Bottleneck], width: int, count: int, stride: int
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != width * block.expansion:
            downsample = nn.Sequential(*_bn_conv(self.inplanes, width * block.expansion, 1, stride))
        blocks: list[nn.Module] = [block(self.inplanes, width, stride, downsample)]
        self.inplanes = width * block.expansion
        blocks += [block(self.inplanes, width, 1, None) for _ in range(1, count)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _resnet(block: type[ResNetBasicBlock] | type[Bottleneck], layers: list[int]) -> Callable:
    def build(*, in_channels: int, num_classes: int, input_size: int, width: int = 64) -> ResNet:
        _check_io("resnet", in_channels, num_classes, input_size)
        _require_int("resnet: width", width)
        return ResNet(block, layers, in_channels=in_channels, num_classes=num_classes, width=width)

    return build


register_model("resnet18")(_resnet(ResNetBasicBlock, [2, 2, 2, 2]))
register_model("resnet34")(_resnet(ResNetBasicBlock, [3, 4, 6, 3]))
register_model("resnet50")(_resnet(Bottleneck, [3, 4, 6, 3]))


class TinyResNet(nn.Module):
    """A ResNet small enough to stream on the dataflow top (identity skips only): a 3x3
    stem, a BasicBlock, a 2x2 max pool, a BasicBlock, global average pooling, a Linear
    layer; written as torchvision writes ResNets (``out += identity``, adaptive pooling,
    ``torch.flatten``)."""

    def __init__(self, *, in_channels: int, num_classes: int, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = ResNetBasicBlock(width, width, 1, None)
        self.maxpool = nn.MaxPool2d(2)
        self.layer2 = ResNetBasicBlock(width, width, 1, None)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.maxpool(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("tiny_resnet")
def tiny_resnet(
    *, in_channels: int, num_classes: int, input_size: int, width: int = 8
) -> TinyResNet:
    """:class:`TinyResNet`; ``width`` channels throughout (input_size >= 2)."""
    _check_io("tiny_resnet", in_channels, num_classes, input_size)
    _require_int("tiny_resnet: width", width)
    if input_size < 2:
        raise ConfigError(f"tiny_resnet needs input_size >= 2 for its pool, not {input_size}")
    return TinyResNet(in_channels=in_channels, num_classes=num_classes, width=width)


# --- MobileNetV2 ----------------------------------------------------------------------------


def _make_divisible(value: float, divisor: int = 8) -> int:
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class _ConvBNReLU6(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(*_bn_conv(cin, cout, k, stride, groups), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """Expand 1x1, depthwise 3x3, project 1x1 (linear); ``x + conv(x)`` when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = round(cin * expand)
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = [] if expand == 1 else [_ConvBNReLU6(cin, hidden, 1)]
        layers += [
            _ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden),
            *_bn_conv(hidden, cout, 1),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


_MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                 (6, 160, 3, 2), (6, 320, 1, 1)]  # fmt: skip


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (``width_mult`` as ``width`` in percent)."""

    def __init__(self, *, in_channels: int, num_classes: int, width: int = 100) -> None:
        super().__init__()
        mult = width / 100
        cin, last = _make_divisible(32 * mult), _make_divisible(1280 * max(1.0, mult))
        features: list[nn.Module] = [_ConvBNReLU6(in_channels, cin, stride=2)]
        for t, c, n, s in _MOBILENET_V2:
            cout = _make_divisible(c * mult)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(_ConvBNReLU6(cin, last, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


@register_model("mobilenet_v2")
def mobilenet_v2(
    *, in_channels: int, num_classes: int, input_size: int, width: int = 100
) -> MobileNetV2:
    """MobileNetV2; ``width`` is torchvision's ``width_mult`` in percent."""
    _check_io("mobilenet_v2", in_channels, num_classes, input_size)
    _require_int("mobilenet_v2: width", width)
    return MobileNetV2(in_channels=in_channels, num_classes=num_classes, width=width)


# --- VGG and AlexNet ------------------------------------------------------------------------

_VGG: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512,
              512, "M"],
}  # fmt: skip


class VGG(nn.Module):
    """torchvision's VGG (no BatchNorm): features, adaptive pool to 7x7, three Linears."""

    def __init__(
        self, cfg: list[int | str], *, in_channels: int, num_classes: int, width: int, hidden: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                cout = int(v) * width // 64
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
                cin = cout
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(cin * 49, hidden), nn.ReLU(True), nn.Dropout(),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
            nn.Linear(hidden, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def _vgg(cfg_name: str) -> Callable:
    def build(
        *, in_channels: int, num_classes: int, input_size: int, width: int = 64, hidden: int = 4096
    ) -> VGG:
        _check_io(cfg_name, in_channels, num_classes, input_size)
        _require_int(f"{cfg_name}: width", width)
        _require_int(f"{cfg_name}: hidden", hidden)
        return VGG(
            _VGG[cfg_name], in_channels=in_channels, num_classes=num_classes, width=width,
            hidden=hidden,
        )  # fmt: skip

    return build


register_model("vgg11")(_vgg("vgg11"))
register_model("vgg16")(_vgg("vgg16"))


class AlexNet(nn.Module):
    """torchvision's AlexNet: five convolutions, adaptive pool to 6x6, three Linears."""

    def __init__(self, *, in_channels: int, num_classes: int, width: int, hidden: int) -> None:
        super().__init__()
        c = [w * width // 64 for w in (64, 192, 384, 256, 256)]
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c[0], 11, 4, 2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            nn.Conv2d(c[0], c[1], 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(True),
            nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(True),
            nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(True), nn.MaxPool2d(3, 2),
        )  # fmt: skip
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(c[4] * 36, hidden), nn.ReLU(True),
            nn.Dropout(0.5), nn.Linear(hidden, hidden), nn.ReLU(True),
            nn.Linear(hidden, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


@register_model("alexnet")
def alexnet(
    *, in_channels: int, num_classes: int, input_size: int, width: int = 64, hidden: int = 4096
) -> AlexNet:
    """AlexNet; ``width`` scales the convolutions (64 = torchvision's)."""
    _check_io("alexnet", in_channels, num_classes, input_size)
    if input_size < 63:
        raise ConfigError(f"alexnet needs an input_size of at least 63, not {input_size!r}")
    return AlexNet(
        in_channels=in_channels,
        num_classes=num_classes,
        width=_require_int("alexnet: width", width),
        hidden=_require_int("alexnet: hidden", hidden),
    )


# --- SqueezeNet 1.0 -------------------------------------------------------------------------


class Fire(nn.Module):
    """Squeeze 1x1, then ``torch.cat`` of expand 1x1 and expand 3x3."""

    def __init__(self, cin: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [
                self.expand1x1_activation(self.expand1x1(x)),
                self.expand3x3_activation(self.expand3x3(x)),
            ],
            1,
        )


class SqueezeNet(nn.Module):
    """torchvision's SqueezeNet 1.0: ceil-mode max pools, a 1x1 conv classifier, global
    average pooling."""

    def __init__(self, *, in_channels: int, num_classes: int) -> None:
        super().__init__()
        pool = lambda: nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 96, 7, 2), nn.ReLU(inplace=True), pool(),
            Fire(96, 16, 64, 64), Fire(128, 16, 64, 64), Fire(128, 32, 128, 128), pool(),
            Fire(256, 32, 128, 128), Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256), pool(), Fire(512, 64, 256, 256),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Conv2d(512, num_classes, 1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((1, 1)),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


@register_model("squeezenet1_0")
def squeezenet1_0(*, in_channels: int, num_classes: int, input_size: int) -> SqueezeNet:
    """SqueezeNet 1.0 (its 7x7 stride-2 stem and three pools need input_size >= 21)."""
    _check_io("squeezenet1_0", in_channels, num_classes, input_size)
    if input_size < 21:
        raise ConfigError(f"squeezenet1_0 needs an input_size of at least 21, not {input_size!r}")
    return SqueezeNet(in_channels=in_channels, num_classes=num_classes)
