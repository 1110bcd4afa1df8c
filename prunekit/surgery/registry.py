"""Per-layer-type surgery rules, and the registry users extend for their own layer types.

Tensors are sliced generically (the dependency graph says which dims and indices); a
``SurgeryRule`` adds what only the layer type knows:

* ``sync(module)`` - update attributes after its tensors shrank (``in_channels``,
  ``num_features``, ``head_dim`` ...), because many forwards read them;
* ``protect(module, prefix)`` - (tensor, dim) pairs that must never shrink;
* ``ties(module, prefix)`` - count constraints the forward imposes without any op
  showing them, e.g. attention that reshapes to ``(heads, embed_dim // heads)``:
  ``Tie(primary, dependent, factor)`` means kept(primary) == factor * kept(dependent).

Example:
    >>> import torch
    >>> import torch.nn as nn
    >>> class Scale(nn.Module):
    ...     def __init__(self, n): super().__init__(); self.w = nn.Parameter(torch.ones(n)); self.n = n
    ...     def forward(self, x): return x * self.w.view(1, -1, 1, 1)
    >>> register_surgery_rule(Scale, SurgeryRule(sync=lambda m: setattr(m, "n", m.w.shape[0])))
    >>> rule_for(Scale(3)) is not None
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from prunekit.surgery.rnn_rules import rnn_hidden_ties, sync_rnn


@dataclass(frozen=True)
class Tie:
    """kept(primary) == factor * kept(dependent); both are (tensor name, dim)."""

    primary: tuple[str, int]
    dependent: tuple[str, int]
    factor: int


@dataclass(frozen=True)
class SurgeryRule:
    """What a layer type needs besides generic slicing (see the module docstring).

    ``keeps_attention_scale``: the module's attention either passes an explicit scale or
    its ``sync`` compensates for the head size changing; without it, query/key head dims
    feeding a scaled-dot-product attention with the default ``1/sqrt(head_dim)`` scale are
    left unpruned (cutting them would change the softmax temperature the model learned).
    """

    sync: Callable[[nn.Module], None] | None = None
    protect: Callable[[nn.Module, str], list[tuple[str, int]]] | None = None
    ties: Callable[[nn.Module, str], list[Tie]] | None = None
    keeps_attention_scale: bool = False


_RULES: dict[type, SurgeryRule] = {}


def register_surgery_rule(module_type: type, rule: SurgeryRule) -> None:
    """Register (or replace) the surgery rule of a module type (subclasses inherit it)."""
    if not isinstance(module_type, type) or not issubclass(module_type, nn.Module):
        raise TypeError(f"module_type must be an nn.Module subclass, got {module_type!r}")
    _RULES[module_type] = rule


_BUILTINS_LOADED: list[bool] = []
_ULTRALYTICS_LOADED: list[bool] = []


def _register_builtin(module_type: type, rule: SurgeryRule) -> None:
    """A built-in rule, unless the user registered one for this type already."""
    _RULES.setdefault(module_type, rule)


def rule_for(module: nn.Module) -> SurgeryRule | None:
    """The surgery rule of ``module``'s type (or a base type), else a Hugging Face attention lookalike rule.

    The built-in torchvision rules are registered on the first lookup, so pruning, plan
    replay (``load_pruned`` in a fresh process) and anything else see the same rules
    whatever ran before.
    """
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED.append(True)
        register_torchvision_rules()
    if type(module).__module__.startswith("ultralytics.") and not _ULTRALYTICS_LOADED:
        _ULTRALYTICS_LOADED.append(True)  # a YOLO module: its rules, also when replaying a plan
        from prunekit.surgery.ultralytics_rules import register_ultralytics_rules

        register_ultralytics_rules()
    for klass in type(module).__mro__:
        if klass in _RULES:
            return _RULES[klass]
    from prunekit.surgery.transformers_rules import attention_rule_for

    return attention_rule_for(module)


def registered_types() -> list[type]:
    return list(_RULES)


# -- built-in rules ---------------------------------------------------------------------
def _sync_conv(m: nn.modules.conv._ConvNd) -> None:
    w = m.weight
    old_in, old_out, g = m.in_channels, m.out_channels, m.groups
    if m.transposed:
        in_c = w.shape[0]
        depthwise = g > 1 and old_in // g == 1
        if depthwise:
            m.groups = in_c
        m.in_channels, m.out_channels = in_c, w.shape[1] * m.groups
        return
    out_c = w.shape[0]
    if g > 1 and old_in // g == 1:  # depthwise-like: whole groups were removed
        mult = old_out // g
        m.groups = out_c // mult
        m.in_channels = m.groups
    else:
        m.in_channels = w.shape[1] * g
    m.out_channels = out_c


def _sync_linear(m: nn.Linear) -> None:
    m.out_features, m.in_features = m.weight.shape


def _sync_bn(m: nn.modules.batchnorm._NormBase) -> None:
    t = m.weight if m.weight is not None else m.running_mean
    if t is not None:
        m.num_features = t.shape[0]


def _sync_ln(m: nn.LayerNorm) -> None:
    if m.weight is not None:
        m.normalized_shape = tuple(m.weight.shape)


def _sync_gn(m: nn.GroupNorm) -> None:
    if m.weight is not None:
        m.num_channels = m.weight.shape[0]


def _sync_embedding(m: nn.Embedding) -> None:
    m.embedding_dim = m.weight.shape[1]


def _sync_prelu(m: nn.PReLU) -> None:
    m.num_parameters = m.weight.numel()


def _sync_mha(m: nn.MultiheadAttention) -> None:
    if m.in_proj_weight is not None:
        e = m.in_proj_weight.shape[1]
        inner = m.in_proj_weight.shape[0] // 3
        q_weight = m.in_proj_weight[:inner]
    else:
        e = m.q_proj_weight.shape[1]
        inner = m.q_proj_weight.shape[0]
        q_weight = m.q_proj_weight
        m.kdim, m.vdim = m.k_proj_weight.shape[1], m.v_proj_weight.shape[1]
    if m._qkv_same_embed_dim:
        m.kdim = m.vdim = e
    m.embed_dim = e
    head_dim = inner // m.num_heads
    if head_dim != m.head_dim:
        # attention scales q.k by 1 / sqrt(head_dim) at run time: keep the trained scale
        # (removed dims contributed nothing) by folding sqrt(new / old) into q
        factor = math.sqrt(head_dim / m.head_dim)
        with torch.no_grad():
            q_weight.mul_(factor)
            if m.in_proj_bias is not None:
                m.in_proj_bias[:inner].mul_(factor)
    m.head_dim = head_dim


def _mha_ties(m: nn.MultiheadAttention, prefix: str) -> list[Tie]:
    if m.in_proj_weight is None:
        return []
    w = prefix + "in_proj_weight"
    return [Tie((w, 1), (w, 0), m.num_heads)]


for _t, _s in (
    (nn.modules.conv._ConvNd, _sync_conv),
    (nn.Linear, _sync_linear),
    (nn.modules.batchnorm._NormBase, _sync_bn),
    (nn.LayerNorm, _sync_ln),
    (nn.GroupNorm, _sync_gn),
    (nn.Embedding, _sync_embedding),
    (nn.PReLU, _sync_prelu),
):
    register_surgery_rule(_t, SurgeryRule(sync=_s))
register_surgery_rule(nn.RNNBase, SurgeryRule(sync=sync_rnn, ties=lambda m, prefix: [
    Tie(a, b, 1) for a, b in rnn_hidden_ties(m, prefix)]))
register_surgery_rule(nn.MultiheadAttention,
                      SurgeryRule(sync=_sync_mha, ties=_mha_ties, keeps_attention_scale=True))


def _linear_weight(prefix: str, name: str) -> str:
    return f"{prefix}{name}.weight"


SWIN_HEAD_DIM = "prunekit_head_dim"


def register_torchvision_rules() -> None:
    """Rules for torchvision modules whose forward reads shape attributes."""
    try:
        from torchvision.models import maxvit, swin_transformer, vision_transformer
    except ImportError:  # pragma: no cover - torchvision is optional
        return

    def swin_ties(m, prefix):
        # remember the head size the weights were trained with (see swin_sync)
        m.__dict__.setdefault(SWIN_HEAD_DIM, m.qkv.weight.shape[1] // m.num_heads)
        w = _linear_weight(prefix, "qkv")
        return [Tie((w, 1), (w, 0), m.num_heads)]

    def swin_sync(m):
        # Swin v1 scales q by (C // num_heads) ** -0.5 at run time; fold the change of
        # head size into q so the trained scale holds (v2's cosine attention has none)
        old, new = m.__dict__.get(SWIN_HEAD_DIM), m.qkv.weight.shape[1] // m.num_heads
        if old and new != old and not hasattr(m, "logit_scale"):
            inner = m.qkv.weight.shape[0] // 3
            with torch.no_grad():
                m.qkv.weight[:inner].mul_(math.sqrt(new / old))
                if m.qkv.bias is not None:
                    m.qkv.bias[:inner].mul_(math.sqrt(new / old))
        if old:
            m.__dict__[SWIN_HEAD_DIM] = new

    def swin_protect(m, prefix):
        out = [(prefix + "relative_position_bias_table", 1)]
        if hasattr(m, "cpb_mlp"):
            last = [n for n, c in m.cpb_mlp.named_children() if isinstance(c, nn.Linear)][-1]
            out.append((f"{prefix}cpb_mlp.{last}.weight", 0))
            out.append((prefix + "logit_scale", 0))
        return out

    rule = SurgeryRule(sync=swin_sync, ties=swin_ties, protect=swin_protect)
    _register_builtin(swin_transformer.ShiftedWindowAttention, rule)

    def maxvit_sync(m):
        m.head_dim = m.to_qkv.weight.shape[0] // 3 // m.n_heads

    def maxvit_ties(m, prefix):
        w = _linear_weight(prefix, "to_qkv")
        return [Tie((w, 1), (w, 0), m.n_heads)]

    def maxvit_protect(m, prefix):
        return [(prefix + "relative_position_bias_table", 1)]

    _register_builtin(
        maxvit.RelativePositionalMultiHeadAttention,
        SurgeryRule(sync=maxvit_sync, ties=maxvit_ties, protect=maxvit_protect),
    )

    def vit_sync(m):
        m.hidden_dim = m.conv_proj.weight.shape[0]

    _register_builtin(vision_transformer.VisionTransformer, SurgeryRule(sync=vit_sync))
    register_torchvision_detection_rules()


def _out_dims(layer: nn.Module, prefix: str) -> list[tuple[str, int]]:
    """(tensor, dim) of a conv / linear layer's output channels."""
    transposed = isinstance(layer, nn.modules.conv._ConvTransposeNd)
    out = [(prefix + "weight", 1 if transposed else 0)]
    if getattr(layer, "bias", None) is not None:
        out.append((prefix + "bias", 0))
    return out


def _last_weighted(module: nn.Module, prefix: str) -> tuple[nn.Module, str] | None:
    """The last conv / linear inside ``module`` (itself if it is one)."""
    last = None
    for name, sub in module.named_modules():
        if isinstance(sub, (nn.modules.conv._ConvNd, nn.Linear)):
            last = (sub, f"{prefix}{name}." if name else prefix)
    return last


def _protect_predictions(*names: str, every_child_of: str | None = None):
    """A ``protect`` rule keeping the output channels of a detection head's prediction
    layers (class logits, box deltas ...): post-processing reads them by position."""

    def protect(m: nn.Module, prefix: str) -> list[tuple[str, int]]:
        layers = [(getattr(m, n), f"{prefix}{n}.") for n in names if hasattr(m, n)]
        if every_child_of is not None:
            layers += [(child, f"{prefix}{every_child_of}.{i}.")
                       for i, child in enumerate(getattr(m, every_child_of))]
        out = []
        for layer, path in layers:
            found = _last_weighted(layer, path)
            if found is not None:
                out += _out_dims(*found)
        return out

    return protect


def register_torchvision_detection_rules() -> None:
    """Protect the prediction layers of torchvision's detection / segmentation heads."""
    try:
        from torchvision.models.detection import faster_rcnn, fcos, keypoint_rcnn, mask_rcnn, retinanet, rpn, ssd
    except ImportError:  # pragma: no cover - torchvision is optional
        return
    heads = {
        rpn.RPNHead: _protect_predictions("cls_logits", "bbox_pred"),
        faster_rcnn.FastRCNNPredictor: _protect_predictions("cls_score", "bbox_pred"),
        mask_rcnn.MaskRCNNPredictor: _protect_predictions("mask_fcn_logits"),
        keypoint_rcnn.KeypointRCNNPredictor: _protect_predictions("kps_score_lowres"),
        retinanet.RetinaNetClassificationHead: _protect_predictions("cls_logits"),
        retinanet.RetinaNetRegressionHead: _protect_predictions("bbox_reg"),
        fcos.FCOSClassificationHead: _protect_predictions("cls_logits"),
        fcos.FCOSRegressionHead: _protect_predictions("bbox_reg", "bbox_ctrness"),
        ssd.SSDScoringHead: _protect_predictions(every_child_of="module_list"),
    }
    for module_type, protect in heads.items():
        _register_builtin(module_type, SurgeryRule(protect=protect))


def sync_modules(model: nn.Module, changed: set[str]) -> None:
    """Run ``sync`` of every module whose tensors changed, and of their ancestors."""
    names = set()
    for t in changed:
        parts = t.split(".")[:-1]
        for i in range(len(parts) + 1):
            names.add(".".join(parts[:i]))
    # children first so a parent reads its children's updated attributes
    for _name, module in sorted(
        ((n, m) for n, m in model.named_modules() if n in names), key=lambda x: -(x[0].count(".") + 1 if x[0] else 0)
    ):
        rule = rule_for(module)
        if rule is not None and rule.sync is not None:
            rule.sync(module)


__all__ = [
    "SurgeryRule",
    "Tie",
    "register_surgery_rule",
    "rule_for",
    "registered_types",
    "register_torchvision_rules",
    "sync_modules",
]
