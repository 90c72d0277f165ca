"""Custom rewards from a spec: ``dotted.module:name`` and ``path/to/file.py:Name``."""

import sys
import textwrap

import pytest
import torch

from reward import CompositeReward, load_reward
from reward.base import BaseReward
from reward.custom import FunctionReward
from reward.spec import split_terms

SOURCE = textwrap.dedent('''
    import torch

    def redness(images, prompts):
        """Mean red channel."""
        return images[:, 0].mean(dim=(1, 2))

    redness.differentiable = True

    def prompt_length(images, prompts):
        return [float(len(p)) for p in prompts]

    def wrong_shape(images, prompts):
        return images.mean(dim=(2, 3))  # (B, 3), not (B,)

    def nan_reward(images, prompts):
        return torch.full((images.shape[0],), float("nan"))

    class Greenness:
        def __call__(self, images, prompts):
            return images[:, 1].mean(dim=(1, 2))

    class NeedsArguments:
        def __init__(self, scale):
            self.scale = scale

    NOT_CALLABLE = 3
''')


@pytest.fixture
def reward_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(SOURCE)
    return path


@pytest.fixture
def reward_module(tmp_path, monkeypatch):
    """A package ``custom_pkg.scores`` importable from tmp_path."""
    package = tmp_path / "pkgroot" / "custom_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "scores.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgroot"))
    yield "custom_pkg.scores"
    for name in [n for n in sys.modules if n.startswith("custom_pkg")]:
        del sys.modules[name]


def _images(batch=3, size=8):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_function_from_a_file_is_wrapped_and_named_by_the_spec(reward_file):
    spec = f"{reward_file}:redness"
    reward = load_reward(spec)
    assert isinstance(reward, FunctionReward) and reward.name == spec and reward.differentiable
    images = _images()
    torch.testing.assert_close(reward(images), images[:, 0].mean(dim=(1, 2)))
    pixels = images.clone().requires_grad_()
    reward(pixels).sum().backward()
    assert pixels.grad.abs().sum() > 0
    assert reward(torch.zeros(0, 3, 8, 8)).shape == (0,)  # the empty batch, as every reward
    uint8 = (images * 255).round().to(torch.uint8)
    torch.testing.assert_close(reward(uint8), (uint8.float() / 255)[:, 0].mean(dim=(1, 2)))


def test_class_from_a_file_is_built_without_arguments_and_not_differentiable_by_default(reward_file):
    reward = load_reward(f"{reward_file}:Greenness")
    assert not reward.differentiable
    images = _images()
    torch.testing.assert_close(reward(images), images[:, 1].mean(dim=(1, 2)))
    with pytest.raises(ValueError, match="not differentiable"):
        reward(images.clone().requires_grad_())


def test_module_function_and_prompts(reward_module):
    reward = load_reward(f"{reward_module}:prompt_length")
    values = reward(_images(2), ["abc", "abcdef"])
    assert values.dtype == torch.float32
    torch.testing.assert_close(values, torch.tensor([3.0, 6.0]))
    assert load_reward(f"{reward_module}:Greenness").name == f"{reward_module}:Greenness"


def test_custom_rewards_in_weighted_sums(reward_file, reward_module):
    spec = f"{reward_module}:redness*0.5 + 2*{reward_file}:Greenness+brightness"
    assert len(split_terms(spec)) == 3
    composite = load_reward(spec)
    assert isinstance(composite, CompositeReward) and not composite.differentiable
    images = _images()
    parts = composite.components(images)
    torch.testing.assert_close(parts["total"], 0.5 * parts[f"{reward_module}:redness"]
                               + 2 * parts[f"{reward_file}:Greenness"] + parts["brightness"])
    assert torch.isfinite(load_reward(spec, normalize="batch_zscore")(images)).all()


def test_artquant_paths_keep_precedence_over_custom_forms(tmp_path):
    # 'artquant:...' is the scorer whatever follows the colon: a missing folder is its error, not an import
    with pytest.raises(FileNotFoundError, match="artquant:"):
        load_reward(f"artquant:{tmp_path}/x.py:Name")
    with pytest.raises(ValueError, match="takes no ':PATH'.*brightness.py"):
        load_reward("brightness:sharpness")


def test_bad_custom_specs_name_the_culprit(reward_file, reward_module, tmp_path):
    with pytest.raises(ValueError, match="no module named 'no_such_pkg'"):
        load_reward("no_such_pkg.rewards:sharpness")
    with pytest.raises(ValueError, match="has no attribute 'sharpness'.*redness"):
        load_reward(f"{reward_module}:sharpness")
    with pytest.raises(FileNotFoundError, match="missing_file.py"):
        load_reward(f"{tmp_path}/missing_file.py:fn")
    with pytest.raises(ValueError, match="int object is not callable"):
        load_reward(f"{reward_file}:NOT_CALLABLE")
    with pytest.raises(ValueError, match=r"NeedsArguments\(\) failed.*no arguments"):
        load_reward(f"{reward_file}:NeedsArguments")
    with pytest.raises(RuntimeError, match=r"returned shape \(3, 3\), expected \(3,\)"):
        load_reward(f"{reward_file}:wrong_shape")(_images())
    with pytest.raises(FloatingPointError, match="nan_reward"):
        load_reward(f"{reward_file}:nan_reward")(_images())
    broken = tmp_path / "broken.py"
    broken.write_text("import definitely_missing_dependency\n")
    with pytest.raises(ValueError, match="broken.py.*definitely_missing_dependency"):
        load_reward(f"{broken}:fn")
    with pytest.raises(ValueError, match="unknown reward.*path/to/file.py:Name"):
        load_reward("not a reward")


def test_a_base_reward_subclass_is_used_as_it_is(tmp_path):
    path = tmp_path / "based.py"
    path.write_text(textwrap.dedent('''
        from reward.base import BaseReward

        class Blue(BaseReward):
            name = "blue"

            def compute(self, images, prompts):
                return images[:, 2].mean(dim=(1, 2))
    '''))
    reward = load_reward(f"{path}:Blue")
    assert isinstance(reward, BaseReward) and reward.name == "blue" and reward.differentiable


def test_custom_specs_from_yaml_and_the_command_line(reward_file, tmp_path, capsys):
    import json

    import yaml
    from PIL import Image

    from reward.commands.rerank import main as rerank

    # YAML: the spec is a plain scalar (a colon followed by no space needs no quotes)
    config = yaml.safe_load(f"reward: {reward_file}:redness*2+brightness\neval_rewards: [{reward_file}:Greenness]\n")
    assert load_reward(config["reward"]).name == f"{reward_file}:redness*2+brightness"
    assert load_reward(config["eval_rewards"][0]).name == f"{reward_file}:Greenness"
    # the command line: artquant rerank --reward FILE.py:NAME
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, red in enumerate([10, 240, 90]):
        Image.new("RGB", (16, 16), (red, 50, 50)).save(folder / f"img_{i}.png")
    assert rerank(["--reward", f"{reward_file}:redness", "--images", str(folder), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "rerank.json").read_text())
    assert report["groups"][0]["best_name"] == "img_1.png"
