"""The stateful side of INQ: per-layer partitions, frozen values and optimizer hooks.

:class:`IncrementalQuantizer` wraps any ``nn.Module``. It finds every ``Conv2d`` and
``Linear`` (by type, never by name, so BatchNorm scales cannot be quantized by accident),
fixes ``n1`` per layer from the weights it sees at construction, and on each
:meth:`~IncrementalQuantizer.advance` freezes the next portion of every layer at its
power-of-two value. Attached to an optimizer it guarantees that frozen weights stay
exactly on their values through every step, whatever the optimizer does: gradients of
frozen weights are zeroed before the step (no momentum builds up), the values are
rewritten after it (weight decay, Adam's state and any other update are undone), and the
optimizer's per-weight state is cleared where weights freeze.
"""

import fnmatch
import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from inq_hw.errors import ConfigError, ModelError
from inq_hw.inq.partition import PARTITIONS, portion_count, step_generator
from inq_hw.inq.schedule import DEFAULT_SCHEDULE, parse_schedule
from inq_hw.quant import (
    check_bits,
    compute_n1,
    compute_n2,
    is_po2_grid,
    is_uniform_grid,
    quantize_po2,
    quantize_uniform,
    uniform_exponent,
)

__all__ = [
    "WEIGHT_FORMATS",
    "INQConfig",
    "IncrementalQuantizer",
    "QuantizedLayer",
    "UnquantizedWeightWarning",
    "quantizable_layers",
    "unquantized_weights",
    "unwrap",
]


class UnquantizedWeightWarning(UserWarning):
    """A module holds weights INQ does not quantize (Conv1d, LSTM, ...): they stay FP32."""


CONFIG_VERSION = 1
#: What a weight freezes to: a power of two (INQ) or a uniform k-bit level (the twin
#: trained by the same incremental re-training, :mod:`inq_hw.intmodel.baseline`).
WEIGHT_FORMATS = ("po2", "uniform")


@dataclass(frozen=True)
class INQConfig:
    """What INQ does to a model.

    Members
    -------
    bits : int
        Weight bit-width, 2 (ternary) to 8.
    schedule : tuple of float
        Accumulated portions, strictly increasing, ending at 1.0.
    partition : str
        ``"magnitude"`` (pruning-inspired, the paper's default) or ``"random"``.
    seed : int
        Seed of the random partition.
    skip : tuple of str
        ``fnmatch`` patterns of module names left in full precision.
    weight_format : str
        ``"po2"`` (0 and ±2**e, INQ's format) or ``"uniform"`` (``m·2**e`` with
        ``|m| <= 2**(bits-1) - 1`` and one step ``2**e`` per layer fixed at the start, the
        uniform twin at equal bit-width).
    """

    bits: int = 5
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    partition: str = "magnitude"
    seed: int = 0
    skip: tuple[str, ...] = ()
    weight_format: str = "po2"
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        check_bits(self.bits)
        object.__setattr__(self, "schedule", parse_schedule(self.schedule))
        if self.partition not in PARTITIONS:
            raise ConfigError(
                f"Partition must be one of {sorted(PARTITIONS)}, not {self.partition!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"Seed must be an integer, not {self.seed!r}")
        if isinstance(self.skip, str) or not all(isinstance(s, str) for s in self.skip):
            raise ConfigError(f"Skip must be a list of module-name patterns, not {self.skip!r}")
        object.__setattr__(self, "skip", tuple(self.skip))
        if self.weight_format not in WEIGHT_FORMATS:
            raise ConfigError(
                f"Weight format must be one of {WEIGHT_FORMATS}, not {self.weight_format!r}"
            )
        if self.version != CONFIG_VERSION:
            raise ConfigError(f"INQ config version must be {CONFIG_VERSION}, not {self.version!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists for tuples); ``weight_format`` only when not ``"po2"``,
        so the configs (and checkpoints) of power-of-two runs read as before."""
        d = asdict(self)
        d["schedule"], d["skip"] = list(self.schedule), list(self.skip)
        if self.weight_format == "po2":
            del d["weight_format"]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "INQConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"Unknown INQ config keys: {sorted(unknown)}")
        values = dict(data)
        for key in ("schedule", "skip"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass
class QuantizedLayer:
    """One quantized weight tensor and its INQ state.

    Members
    -------
    name : str
        Module name in the model.
    weight : torch.nn.Parameter
        The module's weight (live).
    n1, n2 : int
        Exponent range, fixed at the start of INQ. For the uniform format both are the
        step's exponent ``e`` (weights ``m·2**e``).
    frozen : torch.Tensor
        ``bool`` mask of quantized weights.
    values : torch.Tensor
        Quantized value of each frozen weight (0 where free).
    all_zero : bool
        The layer was all zeros when INQ started; it freezes whole at the first step.
    """

    name: str
    weight: nn.Parameter
    n1: int
    n2: int
    frozen: torch.Tensor
    values: torch.Tensor
    all_zero: bool = False


def quantizable_layers(model: nn.Module, skip: Sequence[str] = ()) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every Conv2d and Linear not matched by a ``skip`` pattern."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear) and not any(
            fnmatch.fnmatchcase(name, p) for p in skip
        ):
            found.append((name, module))
    return found


def unquantized_weights(model: nn.Module) -> list[str]:
    """``"name (Type)"`` of every module with its own parameters that INQ leaves in FP32:
    neither a Conv2d or Linear (quantized) nor a normalisation layer (folded or affine)."""
    skipped = (nn.Conv2d, nn.Linear, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    return [
        f"{name or '<model>'} ({type(module).__name__})"
        for name, module in model.named_modules()
        if not isinstance(module, skipped) and any(True for _ in module.parameters(recurse=False))
    ]


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel / DataParallel wrapper, else ``model``."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def _weight(module: nn.Module) -> nn.Parameter:
    weight = module.weight
    if not isinstance(weight, nn.Parameter):
        raise ModelError(f"Layer {type(module).__name__} has no weight parameter")
    return weight


def _initial_n1(name: str, weight: torch.Tensor, config: INQConfig) -> int:
    """``n1`` of a power-of-two layer, or the step exponent of a uniform one."""
    if not bool(torch.isfinite(weight).all()):
        raise ConfigError(f"Layer {name!r} has NaN or Inf weights")
    s = float(weight.detach().abs().max()) if weight.numel() else 0.0
    # An all-zero layer has no scale: n1 = 0 by convention, and the whole layer freezes
    # at zero in the first step (all codes zero) so re-training cannot give it one.
    if s == 0.0:
        return 0
    return uniform_exponent(s, config.bits) if config.weight_format == "uniform" else compute_n1(s)


class IncrementalQuantizer:
    """INQ applied to a model, step by step; usable from any training loop.

    Example usage::

        inq = IncrementalQuantizer(model, INQConfig(bits=5))
        while not inq.done:
            inq.advance()                       # partition + quantize + freeze
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            with inq.attached(optimizer):       # frozen weights cannot move
                for x, y in loader:
                    optimizer.zero_grad()
                    loss_fn(model(x), y).backward()
                    optimizer.step()
        assert inq.check()

    Raises
    ------
    ModelError
        If the model has no Conv2d or Linear layer left after ``skip``.
    ConfigError
        If a layer holds NaN or Inf weights.
    """

    def __init__(self, model: nn.Module, config: INQConfig) -> None:
        if not isinstance(config, INQConfig):
            raise TypeError(f"config must be an INQConfig, not {type(config).__name__}")
        self.model = unwrap(model)
        self.config = config
        self.step = 0
        found = quantizable_layers(self.model, config.skip)
        if not found:
            raise ModelError(
                f"Model {type(self.model).__name__} has no Conv2d or Linear layer to quantize"
            )
        left = unquantized_weights(self.model)
        if left:
            warnings.warn(
                f"INQ quantizes only Conv2d and Linear weights; these stay FP32 (and cannot "
                f"be lowered to power-of-two hardware): {', '.join(left)}",
                UnquantizedWeightWarning,
                stacklevel=2,
            )
        self.layers = [self._new_layer(name, _weight(module)) for name, module in found]
        self._refresh_free()
        self._optimizers: list[torch.optim.Optimizer] = []

    def _new_layer(self, name: str, weight: nn.Parameter) -> QuantizedLayer:
        n1 = _initial_n1(name, weight, self.config)
        frozen = torch.zeros_like(weight, dtype=torch.bool)
        uniform = self.config.weight_format == "uniform"
        return QuantizedLayer(
            name,
            weight,
            n1,
            n1 if uniform else compute_n2(n1, self.config.bits),
            frozen,
            torch.zeros_like(weight.detach()),
            all_zero=not bool(weight.detach().any()),
        )

    @property
    def num_steps(self) -> int:
        return len(self.config.schedule)

    @property
    def done(self) -> bool:
        return self.step >= self.num_steps

    @property
    def portion(self) -> float:
        """Accumulated portion reached so far (0 before the first step)."""
        return self.config.schedule[self.step - 1] if self.step else 0.0

    @torch.no_grad()
    def advance(self) -> float:
        """Freeze the next portion of every layer at its power-of-two value.

        Returns the portion reached. Clears optimizer state of newly frozen weights in
        every attached optimizer.
        """
        if self.done:
            raise ConfigError(f"INQ already finished all {self.num_steps} steps")
        portion = self.config.schedule[self.step]
        choose = PARTITIONS[self.config.partition]
        for layer in self.layers:
            count = portion_count(layer.frozen.numel(), 1.0 if layer.all_zero else portion)
            generator = step_generator(self.config.seed, layer.name, self.step)
            new_frozen = choose(layer.weight, layer.frozen, count, generator)
            newly = new_frozen & ~layer.frozen
            quantized = self._quantize(layer)
            layer.values = torch.where(newly, quantized, layer.values)
            layer.frozen = new_frozen
        self.step += 1
        self._refresh_free()
        self.enforce()
        for optimizer in self._optimizers:
            self.clear_optimizer_state(optimizer)
        return portion

    def _quantize(self, layer: QuantizedLayer) -> torch.Tensor:
        """Every weight of ``layer`` on its grid (the value it freezes to)."""
        if self.config.weight_format == "uniform":
            return quantize_uniform(layer.weight, self.config.bits, layer.n1)
        return quantize_po2(layer.weight, self.config.bits, n1=layer.n1)

    def on_grid(self, values: torch.Tensor, layer: QuantizedLayer) -> bool:
        """Whether every element of ``values`` lies on ``layer``'s grid."""
        if self.config.weight_format == "uniform":
            return is_uniform_grid(values, self.config.bits, layer.n1)
        return is_po2_grid(values, self.config.bits, layer.n1)

    @torch.no_grad()
    def enforce(self) -> None:
        """Write every frozen weight's value into the model (undoes any update).

        ``w·free + values`` is exact for finite weights: free entries are multiplied by 1
        and get 0 added, frozen ones become their value. One fused call over all layers
        keeps INQ's per-step cost at about 2% of an epoch (benches/bench_inq_overhead.py).
        A step that left a non-finite weight (a diverged run) would turn a frozen weight
        into NaN here; :meth:`check` then fails and the driver stops with an error.
        """
        weights = [layer.weight.detach() for layer in self.layers]
        torch._foreach_mul_(weights, self._free)
        torch._foreach_add_(weights, [layer.values for layer in self.layers])

    @torch.no_grad()
    def mask_gradients(self) -> None:
        """Zero the gradients of frozen weights (the paper's T = 0 in the update rule).

        Not needed with :meth:`attach`; for training loops that update weights by hand.
        """
        pairs = [
            (layer.weight.grad, free) for layer, free in zip(self.layers, self._free, strict=True)
        ]
        grads = [grad for grad, _ in pairs if grad is not None]
        if grads:
            torch._foreach_mul_(grads, [free for grad, free in pairs if grad is not None])

    @torch.no_grad()
    def clear_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero momentum / Adam moments of frozen weights in ``optimizer``'s state."""
        tensors, masks = [], []
        for layer, free in zip(self.layers, self._free, strict=True):
            for value in optimizer.state.get(layer.weight, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == layer.weight.shape:
                    tensors.append(value)
                    masks.append(free)
        if tensors:
            torch._foreach_mul_(tensors, masks)

    def _refresh_free(self) -> None:
        self._free = [(~layer.frozen).to(layer.weight.dtype) for layer in self.layers]

    def attach(self, optimizer: torch.optim.Optimizer) -> "_Attachment":
        """Hook ``optimizer`` so frozen weights never move; returns a removable handle.

        One post-step hook restores frozen weights and zeroes their optimizer state. For
        element-wise optimizers (SGD, momentum, Nesterov, Adam, AdamW, RMSprop, ...) that
        is exactly the paper's masked update ``W ← W − γ·∂E/∂W·T``: what a frozen entry's
        gradient, weight decay or momentum did within the step is undone and leaves no
        trace. Masking gradients before the step as well would only add a pass over memory
        (it is there as :meth:`mask_gradients` for loops without a torch optimizer).
        """
        post = optimizer.register_step_post_hook(lambda *_: self._after_step(optimizer))
        self._optimizers.append(optimizer)
        self.clear_optimizer_state(optimizer)
        return _Attachment(self, optimizer, [post])

    def _after_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Weight decay enters the update after the gradient mask, so undo it and its trace
        # in momentum / Adam moments: frozen weights carry no optimizer state at all.
        self.enforce()
        self.clear_optimizer_state(optimizer)

    def attached(self, optimizer: torch.optim.Optimizer) -> "_Attachment":
        """Context-manager spelling of :meth:`attach`."""
        return self.attach(optimizer)

    def check(self) -> bool:
        """True when every frozen weight equals its value and lies on the layer's grid."""
        for layer in self.layers:
            w = layer.weight.detach()
            if not torch.equal(w[layer.frozen], layer.values[layer.frozen]):
                return False
            if not self.on_grid(w[layer.frozen], layer):
                return False
        return True

    def summary(self) -> list[dict[str, Any]]:
        """Per layer: name, n1, n2, weights, frozen and zero-valued frozen weights."""
        return [
            {
                "name": layer.name,
                "n1": layer.n1,
                "n2": layer.n2,
                "weights": layer.frozen.numel(),
                "frozen": int(layer.frozen.sum()),
                "zeros": int((layer.frozen & (layer.values == 0)).sum()),
            }
            for layer in self.layers
        ]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: config, step, n1/n2 and mask per layer."""
        return {
            "config": self.config.to_dict(),
            "step": self.step,
            "layers": {
                layer.name: {"n1": layer.n1, "n2": layer.n2, "mask": layer.frozen.clone()}
                for layer in self.layers
            },
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore masks, n1 and step; frozen values are re-derived from the weights.

        Load the model's own state dict first: the frozen weights in it are the values.

        Raises
        ------
        ConfigError
            If the state does not match this quantizer's config or layers.
        """
        if INQConfig.from_dict(state["config"]) != self.config:
            raise ConfigError("INQ state was saved with a different config")
        names = [layer.name for layer in self.layers]
        if sorted(state["layers"]) != sorted(names):
            raise ConfigError(
                f"INQ state layers {sorted(state['layers'])} differ from the model's {names}"
            )
        for layer in self.layers:
            saved = state["layers"][layer.name]
            mask = saved["mask"].to(torch.bool)
            if mask.shape != layer.weight.shape:
                raise ConfigError(f"INQ mask of layer {layer.name!r} has shape {tuple(mask.shape)}")
            layer.n1, layer.n2 = int(saved["n1"]), int(saved["n2"])
            layer.frozen = mask
            layer.values = torch.where(mask, layer.weight.detach(), torch.zeros_like(layer.weight))
        self.step = int(state["step"])
        self._refresh_free()
        if not self.check():
            raise ConfigError(f"INQ state: frozen weights are not on the {self._grid} grid")

    @property
    def _grid(self) -> str:
        return "power-of-two" if self.config.weight_format == "po2" else "uniform"

    def __iter__(self) -> Iterator[QuantizedLayer]:
        return iter(self.layers)


class _Attachment:
    """Handle of an optimizer attached to a quantizer; a context manager."""

    def __init__(
        self, inq: IncrementalQuantizer, optimizer: torch.optim.Optimizer, handles: list[Any]
    ) -> None:
        self._inq, self._optimizer, self._handles = inq, optimizer, handles

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._optimizer in self._inq._optimizers:
            self._inq._optimizers.remove(self._optimizer)

    def __enter__(self) -> "_Attachment":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
