import pytest

from sakd.errors import ConfigError
from sakd.models import create_model
from sakd.training.config import load_config, packaged_configs


def test_overrides_are_typed():
    cfg = load_config(None, ["optim.lr=1e-3", "model.spiking=false", "data.options.image_size=8",
                             "distill.beta_schedule=[{epoch: 10, beta: 0.01}]"])
    assert cfg.optim.lr == 0.001 and cfg.model.spiking is False and cfg.data.options == {"image_size": 8}
    assert cfg.distill.beta_at(9) == 0.0 and cfg.distill.beta_at(10) == 0.01


def test_base_inheritance_and_paper_presets():
    cfg = load_config("cifar100/resnet19_sakd")
    assert (cfg.distill.tau, cfg.distill.alpha, cfg.distill.gamma, cfg.distill.beta) == (20, 0, 1, 100)
    assert cfg.model.name == "resnet19" and cfg.model.spiking and cfg.model.timesteps == 4
    assert cfg.optim.name == "sgd" and cfg.optim.lr == 0.1 and cfg.optim.epochs == 200
    assert cfg.mode == "sakd"
    imagenet = load_config("presets/sakd_imagenet")
    assert (imagenet.distill.tau, imagenet.distill.alpha, imagenet.distill.gamma) == (1, 1, 10)
    assert imagenet.distill.beta_at(0) == 10 and imagenet.distill.beta_at(10) == 0.01


@pytest.mark.parametrize("name", packaged_configs())
def test_every_packaged_config_loads_and_names_a_model(name):
    cfg = load_config(name)
    create_model(cfg.model.name, spiking=cfg.model.spiking, num_classes=10, **cfg.model.options)


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=0.1", "unknown config key 'optim.lrr'; did you mean 'optim.lr'"),
        ("optim.lr=fast", "'optim.lr' must be a number"),
        ("model.timesteps=2.5", "'model.timesteps' must be an integer"),
        ("model.name.x=1", "is a value, not a section"),
        ("nonsense", "must look like key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_unknown_config_name_is_a_clear_error():
    with pytest.raises(ConfigError, match="neither a file nor a packaged config"):
        load_config("cifar10/resnet91_sakd")


def test_bad_yaml_is_reported_with_its_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(bad)
