"""Model registry and families: every registered model, at small sizes, plus family specifics."""

from __future__ import annotations

from typing import Literal, get_origin

import pytest
import torch
from torch import nn

from harness.core.errors import SpecError
from harness.models.cnn import GatedTanh, ResidualBlock
from harness.models.registry import create_model, model_names, model_params, register_model
from harness.models.resnet import BasicBlock

NUM_CLASSES = 11


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --- every registered model ------------------------------------------------------------------


def test_registry_lists_the_families() -> None:
    assert {"cnn", "residual_cnn", "interleaved_cnn", "resnet", "resnext"} <= set(model_names())


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize(("in_channels", "image_size"), [(3, 32), (1, 48)])
def test_output_shape(name: str, in_channels: int, image_size: int) -> None:
    model = create_model(
        name, num_classes=NUM_CLASSES, in_channels=in_channels, image_size=image_size
    )
    out = model(torch.randn(2, in_channels, image_size, image_size))
    assert out.shape == (2, NUM_CLASSES)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name", model_names())
def test_backward_gives_finite_gradients_everywhere(name: str) -> None:
    model = create_model(name, num_classes=NUM_CLASSES)
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    nn.functional.cross_entropy(model(x), y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", model_names())
def test_bf16_autocast_channels_last_matches_fp32(name: str) -> None:
    model = create_model(name, num_classes=NUM_CLASSES).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x.to(memory_format=torch.channels_last))
    assert out.shape == (2, NUM_CLASSES)
    assert torch.isfinite(out).all()
    # bf16 keeps ~3 significant digits; a layout or autocast bug would be far off.
    assert torch.allclose(out.float(), ref, atol=0.1 * ref.abs().max().item() + 1e-3)


@pytest.mark.parametrize("name", model_names())
def test_builds_on_the_meta_device(name: str) -> None:
    # The spec layer builds every model on "meta" to surface value errors without allocating.
    with torch.device("meta"):
        model = create_model(name, num_classes=NUM_CLASSES, image_size=48)
    assert all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("name", model_names())
def test_same_seed_same_weights(name: str) -> None:
    torch.manual_seed(7)
    a = create_model(name, num_classes=NUM_CLASSES).state_dict()
    torch.manual_seed(7)
    b = create_model(name, num_classes=NUM_CLASSES).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", model_names())
def test_model_params_are_annotated_with_valid_defaults(name: str) -> None:
    params = model_params(name)
    assert params, f"{name} exposes no params"
    # The forms the spec layer turns into pydantic fields.
    scalar = (int, float, bool, tuple[int, ...])
    for key, (annotation, _) in params.items():
        assert annotation in scalar or get_origin(annotation) is Literal, (key, annotation)
    # Passing every default back explicitly must be accepted.
    create_model(name, num_classes=NUM_CLASSES, **{k: d for k, (_, d) in params.items()})


# --- the registry ----------------------------------------------------------------------------


def test_model_params_reports_exact_annotations() -> None:
    params = model_params("cnn")
    assert params["widths"] == (tuple[int, ...], (32, 64, 128, 256))
    assert params["dense"] == (int, 512)
    assert params["dropout"] == (float, 0.0)
    assert params["norm"] == (Literal["none", "batch", "layer"], "none")
    assert params["final_relu"] == (bool, False)
    assert model_params("resnext")["cardinality"][0] is int


def test_unknown_model_names_the_nearest() -> None:
    with pytest.raises(SpecError, match="unknown model 'resnxt'.*did you mean 'resnext'"):
        create_model("resnxt", num_classes=NUM_CLASSES)
    with pytest.raises(SpecError, match="did you mean 'residual_cnn'"):
        model_params("residul_cnn")


def test_unknown_param_names_the_nearest() -> None:
    with pytest.raises(SpecError, match="no parameter 'widht'.*did you mean 'widths'"):
        create_model("cnn", num_classes=NUM_CLASSES, widht=(8,))


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("cnn", {"dense": 0}, "dense must be positive"),
        ("cnn", {"dense": 1.5}, "dense must be int"),
        ("cnn", {"final_relu": 1}, "final_relu must be bool"),
        ("cnn", {"norm": "group"}, "norm must be one of 'none', 'batch', 'layer'"),
        ("cnn", {"widths": (32, -1)}, "widths must be positive"),
        ("cnn", {"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ("interleaved_cnn", {"blocks_per_stage": (1, 1)}, "one count per width"),
        ("residual_cnn", {"num_blocks": -1}, "num_blocks must be >= 0"),
        ("resnext", {"depths": (1, 1)}, "one entry per stage"),
        ("resnext", {"cardinality": 0}, "cardinality must be positive"),
        ("resnext", {"widths": (8, 16, 32), "base_width": 4}, "no channels per group"),
        ("resnet", {"stem": "cifar"}, "stem must be one of 'small', 'strided', 'deep', 'imagenet'"),
    ],
)
def test_bad_param_values_raise_spec_error(name: str, params: dict, match: str) -> None:
    with pytest.raises(SpecError, match=f"model '{name}': .*{match}"):
        create_model(name, num_classes=NUM_CLASSES, **params)


@pytest.mark.parametrize(("stem", "side"), [("small", 48), ("strided", 24), ("deep", 24), ("imagenet", 12)])
def test_resnet_stems_set_the_first_stage_resolution(stem: str, side: int) -> None:
    model = create_model("resnet", num_classes=NUM_CLASSES, in_channels=1, image_size=48, stem=stem)
    x = torch.randn(2, 1, 48, 48)
    assert model.stem(x).shape == (2, 32, side, side)
    assert model(x).shape == (2, NUM_CLASSES)
    convs = [m for m in model.stem if isinstance(m, nn.Conv2d)]
    if stem == "deep":  # full resolution first, at half the width, then the stride-2 conv
        assert [(c.out_channels, c.stride) for c in convs] == [(16, (1, 1)), (32, (2, 2))]


def test_bad_sizes_raise_spec_error() -> None:
    with pytest.raises(SpecError, match="num_classes must be a positive integer"):
        create_model("cnn", num_classes=0)
    with pytest.raises(SpecError, match="image_size 8 is too small for 4 2x2 max-pools"):
        create_model("cnn", num_classes=NUM_CLASSES, image_size=8)


def test_yaml_lists_become_tuples() -> None:
    model = create_model("cnn", num_classes=NUM_CLASSES, widths=[8, 16], dense=32)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, NUM_CLASSES)


def test_register_model_rejects_malformed_builders() -> None:
    def untyped(num_classes, in_channels, image_size, *, width=8):  # type: ignore[no-untyped-def]
        return nn.Identity()

    with pytest.raises(TypeError, match="needs a type and a default"):
        register_model(untyped)

    def cnn(num_classes: int, in_channels: int, image_size: int, *, width: int = 8) -> nn.Module:
        return nn.Identity()

    with pytest.raises(ValueError, match="registered twice"):
        register_model(cnn)
    assert "untyped" not in model_names()


# --- the study's CNN family ------------------------------------------------------------------


def test_plain_cnn_parameter_count() -> None:
    # By hand, 3→11 at 32 px: convs 3·32·9+32 = 896, 32·64·9+64 = 18_496, 64·128·9+128 = 73_856,
    # 128·256·9+256 = 295_168; four pools leave 256·2·2 = 1024 features → dense 1024·512+512 =
    # 524_800 → output 512·11+11 = 5_643. Total 918_859.
    assert n_params(create_model("cnn", num_classes=NUM_CLASSES)) == 918_859
    # At 48 px the flatten is 256·3·3 = 2304, so the dense layer grows by 1280·512 = 655_360.
    assert n_params(create_model("cnn", num_classes=NUM_CLASSES, image_size=48)) == 1_574_219


def test_residual_cnn_adds_five_width_256_blocks() -> None:
    plain = create_model("cnn", num_classes=NUM_CLASSES)
    residual = create_model("residual_cnn", num_classes=NUM_CLASSES)
    assert count(plain, ResidualBlock) == 0
    blocks = [m for m in residual.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 5
    assert all(b.branch[0].in_channels == b.branch[0].out_channels == 256 for b in blocks)
    # Each block is one 3x3 conv 256→256 with bias: 590_080 params.
    assert n_params(residual) - n_params(plain) == 5 * 590_080


def test_residual_blocks_run_on_the_last_stage_at_4x4() -> None:
    residual = create_model("residual_cnn", num_classes=NUM_CLASSES)
    sizes: list[tuple[int, ...]] = []
    for m in residual.modules():
        if isinstance(m, ResidualBlock):
            m.register_forward_hook(lambda _m, _i, out: sizes.append(tuple(out.shape[1:])))
    residual(torch.randn(1, 3, 32, 32))
    assert sizes == [(256, 4, 4)] * 5


def test_interleaved_cnn_has_a_block_at_every_stage_width() -> None:
    model = create_model("interleaved_cnn", num_classes=NUM_CLASSES)
    widths = [m.branch[0].in_channels for m in model.modules() if isinstance(m, ResidualBlock)]
    assert widths == [32, 64, 128, 256, 256]


def test_final_relu_gives_nonnegative_logits() -> None:
    model = create_model("cnn", num_classes=NUM_CLASSES, final_relu=True)
    out = model(torch.randn(16, 3, 32, 32))
    assert (out >= 0).all()
    # Without it, some logits of a fresh network are negative, so the check above can fail.
    assert (create_model("cnn", num_classes=NUM_CLASSES)(torch.randn(16, 3, 32, 32)) < 0).any()


@pytest.mark.parametrize(("norm", "kind"), [("batch", nn.BatchNorm2d), ("layer", nn.GroupNorm)])
@pytest.mark.parametrize("name", ["cnn", "residual_cnn"])
def test_norm_inserts_a_norm_after_every_conv(name: str, norm: str, kind: type) -> None:
    model = create_model(name, num_classes=NUM_CLASSES, norm=norm)
    assert count(model, kind) == count(model, nn.Conv2d) > 0
    assert count(create_model(name, num_classes=NUM_CLASSES), kind) == 0
    if kind is nn.GroupNorm:
        # One group: the norm is over (C, H, W), a layer norm.
        assert all(m.num_groups == 1 for m in model.modules() if isinstance(m, nn.GroupNorm))
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, NUM_CLASSES)


def test_gated_tanh_unit() -> None:
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    out = GatedTanh()(torch.cat([a, b], dim=1))
    assert torch.allclose(out, torch.tanh(a) * torch.sigmoid(b))

    model = create_model("residual_cnn", num_classes=NUM_CLASSES, activation="gtu")
    # Gates replace the blocks' ReLUs only: the 4 stage convs and the dense layer keep theirs.
    assert count(model, GatedTanh) == 5
    assert count(model, nn.ReLU) == 4 + 1
    assert "activation" not in model_params("cnn")  # no blocks, nothing to gate
    # Each gated conv produces both halves: twice the output channels it passes on.
    first_block = next(m for m in model.modules() if isinstance(m, ResidualBlock))
    assert first_block.branch[0].out_channels == 2 * 256
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert torch.isfinite(out).all()


def test_dropout_is_active_only_in_training() -> None:
    model = create_model("cnn", num_classes=NUM_CLASSES, dropout=0.5)
    x = torch.randn(2, 3, 32, 32)
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


# --- the ResNet / ResNeXt family -------------------------------------------------------------


def test_resnext_uses_grouped_convs_with_cardinality_groups() -> None:
    model = create_model("resnext", num_classes=NUM_CLASSES, cardinality=4)
    groups = [m.groups for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert groups and all(g == 4 for g in groups)
    assert len(groups) == sum(model_params("resnext")["depths"][1])
    # The plain ResNet has no grouped convs.
    resnet = create_model("resnet", num_classes=NUM_CLASSES)
    assert all(m.groups == 1 for m in resnet.modules() if isinstance(m, nn.Conv2d))


def test_resnext50_32x4d_parameter_count() -> None:
    # torchvision's resnext50_32x4d has 25_028_904 params with 1000 classes (3·224 px input).
    model = create_model(
        "resnext", num_classes=1000, depths=(3, 4, 6, 3), widths=(64, 128, 256, 512),
        cardinality=32, base_width=4, stem_width=64, stem="imagenet",
    )  # fmt: skip
    assert n_params(model) == 25_028_904


def test_resnet_last_bn_of_each_branch_starts_at_zero() -> None:
    model = create_model("resnet", num_classes=NUM_CLASSES, depths=(2, 1, 1, 1))
    zeroed = [m.bn2 for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(zeroed) == 5 and all(torch.all(bn.weight == 0) for bn in zeroed)
    # The stem's BN is not zeroed: a network of identity blocks still sees its input.
    assert torch.all(model.stem[1].weight == 1)


def test_resnet_parameter_count() -> None:
    # By hand, 3→11 at 32 px, BN = 2 params per channel: stem 3·32·9 + 64 = 928;
    # stage 32→32: 2·32·32·9 + 2·64 = 18_560; 32→64: 32·64·9 + 64·64·9 + 2·128 + 32·64 + 128 =
    # 57_728; 64→128: 73_728 + 147_456 + 512 + 8_192 + 256 = 230_144; 128→256: 294_912 +
    # 589_824 + 1_024 + 32_768 + 512 = 919_040; fc 256·11 + 11 = 2_827. Total 1_229_227.
    assert n_params(create_model("resnet", num_classes=NUM_CLASSES)) == 1_229_227


def test_resnext_default_parameter_count() -> None:
    # By hand, BN = 2 params per channel, grouped conv = out·(in/groups)·9: stem 3·16·9 + 32 = 464.
    # Stage 16→64 (grouped width 32): 16·32 + 64 + 32·4·9 + 64 + 32·64 + 128 + 16·64 + 128 = 5_120.
    # Stage 64→128 (width 64): 4_096 + 128 + 64·8·9 + 128 + 8_192 + 256 + 8_192 + 256 = 25_856.
    # Stage 128→256 (width 128): 16_384 + 256 + 128·16·9 + 256 + 32_768 + 512 + 32_768 + 512 =
    # 101_888. fc 256·11 + 11 = 2_827. Total 136_155.
    assert n_params(create_model("resnext", num_classes=NUM_CLASSES)) == 136_155


def test_pool_first_commutes_without_a_norm_and_pools_before_the_norm_with_one() -> None:
    torch.manual_seed(0)
    study = create_model("cnn", num_classes=NUM_CLASSES)
    moved = create_model("cnn", num_classes=NUM_CLASSES, pool_first=True)
    copy_parameters(study, moved)  # same parameters, only the order differs
    x = torch.randn(4, 3, 32, 32)
    # max-pool commutes with ReLU: without a norm the function is unchanged.
    assert torch.allclose(study(x), moved(x), atol=1e-6)
    assert count(moved, nn.MaxPool2d) == count(study, nn.MaxPool2d) == 4

    bn = create_model("cnn", num_classes=NUM_CLASSES, norm="batch", pool_first=True)
    order = [type(m) for m in bn.modules() if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.BatchNorm2d)]
    assert order == [nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d] * 4
    # Each norm sees the pooled map: its statistics differ from the study's order.
    bn_study = create_model("cnn", num_classes=NUM_CLASSES, norm="batch")
    copy_parameters(bn, bn_study)
    assert not torch.allclose(bn(x), bn_study(x), atol=1e-4)


def copy_parameters(source: nn.Module, target: nn.Module) -> None:
    """Copy parameters and buffers in order (the module indices differ between the orders)."""
    with torch.no_grad():
        pairs = zip(list(source.parameters()) + list(source.buffers()),
                    list(target.parameters()) + list(target.buffers()), strict=True)  # fmt: skip
        for a, b in pairs:
            b.copy_(a)


def test_pool_first_runs_the_residual_blocks_on_the_pooled_maps() -> None:
    sizes: list[int] = []
    model = create_model("interleaved_cnn", num_classes=NUM_CLASSES, image_size=48, norm="batch", pool_first=True)
    for block in (m for m in model.modules() if isinstance(m, ResidualBlock)):
        block.register_forward_hook(lambda _m, inputs, _out: sizes.append(inputs[0].shape[-1]))
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, NUM_CLASSES)
    assert sizes == [24, 12, 6, 3, 3]  # the study's order would give 48, 24, 12, 6, 6
