"""The torchvision-style zoo: torchvision's parameter counts, and each model through
fold → one INQ step → lower → golden executor (argmax of the float INQ model) → PE-array
compile and explore (or its refusal naming the layer) → analytic cost."""

import numpy as np
import pytest
import torch

from inq_hw.commands.explore import explore_model
from inq_hw.cost.analytic import analyze
from inq_hw.intmodel import quantize_input, run
from inq_hw.models import build_model, model_names
from rtl_gen.pe_program import ProgramError
from tests.test_lower_ops import lowered

#: torchvision's published parameter counts at 1000 classes (torchvision.models docs).
TORCHVISION_PARAMETERS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "vgg11": 132_863_336,
    "vgg16": 138_357_544,
    "squeezenet1_0": 1_248_424,
    "alexnet": 61_100_840,
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMETERS))
def test_parameter_counts_equal_torchvisions(name: str) -> None:
    assert name in model_names()
    with torch.device("meta"):  # shapes only: no 138M random weights
        model = build_model(name, in_channels=3, num_classes=1000, input_size=224)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMETERS[name]


#: (name, input size, options that shrink it for a test; None: the PE array's refusal).
PIPELINES = [
    pytest.param("resnet18", 32, {"width": 4}, None, id="resnet18"),
    pytest.param("tiny_resnet", 8, {"width": 4}, None, id="tiny_resnet"),
    pytest.param("resnet34", 32, {"width": 4}, None, marks=pytest.mark.slow),
    pytest.param("resnet50", 32, {"width": 4}, None, marks=pytest.mark.slow),
    pytest.param("mobilenet_v2", 32, {"width": 25}, None, marks=pytest.mark.slow),
    pytest.param("squeezenet1_0", 32, {}, None, marks=pytest.mark.slow),
    pytest.param("vgg11", 32, {"width": 4, "hidden": 32}, None, id="vgg11-32"),
    pytest.param("vgg16", 32, {"width": 4, "hidden": 32}, None, marks=pytest.mark.slow),
    pytest.param("vgg11", 224, {"width": 4, "hidden": 32}, None, marks=pytest.mark.slow),
    pytest.param("vgg16", 224, {"width": 4, "hidden": 32}, None, marks=pytest.mark.slow),
    pytest.param("alexnet", 224, {"width": 4, "hidden": 32}, None, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "size", "options", "refusal"), PIPELINES)
def test_zoo_model_through_every_stage(
    name: str, size: int, options: dict[str, int], refusal: str | None
) -> None:
    torch.manual_seed(0)
    model = build_model(name, in_channels=3, num_classes=10, input_size=size, **options)
    x = torch.rand(16, 3, size, size)
    int_model = lowered(model, x)
    with torch.no_grad():
        float_classes = model(x).argmax(1).numpy()
    logits = run(int_model, quantize_input(x.numpy(), int_model.input.out))
    agreement = float((np.asarray(logits).argmax(1) == float_classes).mean())
    assert agreement >= 0.75, agreement  # random weights: logits close together
    if refusal is None:
        rows, _ = explore_model(int_model, [(4, 4)], None, 100.0)
        assert rows[0]["cycles"] > 0
    else:
        with pytest.raises(ProgramError, match=refusal):
            explore_model(int_model, [(4, 4)], None, 100.0)
    cost = analyze(int_model)
    assert {layer.name for layer in cost.layers} >= {w.name for w in int_model.weight_layers()}
