"""The INQ paper's own published ImageNet results: *the paper's figures, not ours*.

Zhou, Yao, Guo, Xu, Chen, "Incremental Network Quantization: Towards Lossless CNNs with
Low-Precision Weights", ICLR 2017 (arXiv 1702.03044), as summarised in the project's
``PAPER.md``. Some of the figures there come from secondary copies of the paper, so the
report cites them as "reported". Nothing in this module was measured by inq-hw; the report
sets these beside our own results only for orientation (ImageNet CNNs against our data set).
"""

from dataclasses import dataclass

__all__ = [
    "PAPER_CITATION",
    "PAPER_NETWORKS",
    "PAPER_NOTES",
    "PAPER_RESNET18_BITS",
    "PaperResult",
]

PAPER_CITATION = (
    'Zhou, Yao, Guo, Xu, Chen, "Incremental Network Quantization: Towards Lossless CNNs '
    'with Low-Precision Weights", ICLR 2017, arXiv 1702.03044'
)


@dataclass(frozen=True)
class PaperResult:
    """One published ImageNet result of the paper (top-1 / top-5 accuracy in percent).

    Members
    -------
    network : str
        The CNN.
    bits : int
        INQ weight bit-width (2 is the paper's ternary case).
    fp32_top1, fp32_top5 : float
        The paper's full-precision reference.
    inq_top1, inq_top5 : float
        The paper's INQ model at ``bits``.
    """

    network: str
    bits: int
    fp32_top1: float
    fp32_top5: float
    inq_top1: float
    inq_top5: float

    @property
    def top1_change(self) -> float:
        """INQ minus FP32 top-1, in percentage points (positive: INQ better)."""
        return round(self.inq_top1 - self.fp32_top1, 2)


#: The paper's headline table: five ImageNet CNNs, FP32 against INQ at 5 bits.
PAPER_NETWORKS = (
    PaperResult("AlexNet", 5, 57.2, 80.2, 57.4, 80.5),
    PaperResult("VGG-16", 5, 68.5, 88.7, 70.8, 90.3),
    PaperResult("GoogleNet", 5, 68.9, 89.0, 69.0, 89.3),
    PaperResult("ResNet-18", 5, 68.27, 88.69, 68.98, 89.10),
    PaperResult("ResNet-50", 5, 73.2, 91.2, 74.8, 92.5),
)

#: ResNet-18 at each bit-width the paper reports (2 bits: ternary weights).
PAPER_RESNET18_BITS = (
    PaperResult("ResNet-18", 5, 68.27, 88.69, 68.98, 89.10),
    PaperResult("ResNet-18", 4, 68.27, 88.69, 68.89, 89.01),
    PaperResult("ResNet-18", 3, 68.27, 88.69, 68.08, 88.36),
    PaperResult("ResNet-18", 2, 68.27, 88.69, 66.02, 87.13),
)

#: Further claims of the paper, quoted in the report's comparison section.
PAPER_NOTES = (
    "Pruning-inspired (largest magnitude first) partition beats random partition by about "
    "0.8 points top-1 on ResNet-18 at 5 bits.",
    "With Dynamic Network Surgery pruning first, AlexNet compresses about 53x with no loss "
    "of accuracy.",
)
