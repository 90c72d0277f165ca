"""ArtQuantScorer on tiny random-init models of both families."""

import pytest
import torch

from artquant_core.scorer import ArtQuantScorer, ScoreOutput
from artquant_core.tiny import TinyScorerConfig, build_tiny_scorer
from tests._scorer_helpers import FAMILIES, painting


@pytest.fixture(scope="module", params=FAMILIES)
def scorer(request):
    return build_tiny_scorer(pretrained=False, family=request.param)


def test_score_shapes_and_ranges(scorer):
    out = scorer.score(torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert isinstance(out, ScoreOutput)
    assert out.score.shape == (3,) and out.level_probs.shape == (3, 5) and out.std.shape == (3,)
    assert torch.allclose(out.level_probs.sum(-1), torch.ones(3), atol=1e-6)
    assert ((out.score >= 1.0) & (out.score <= 10.0)).all()
    expected = out.level_probs @ torch.tensor([10.0, 7.5, 5.0, 3.5, 1.0])
    assert torch.allclose(out.score, expected, atol=1e-5)
    assert (out.std > 0).all() and not out.score.requires_grad


def test_score_from_logits_is_the_expectation(scorer):
    logits = torch.full((2, len(scorer.tokenizer)), -1e4)
    logits[0, scorer.level_token_ids[0]] = 0.0  # all mass on "excellent"
    logits[1, scorer.level_token_ids[[2, 3]]] = 0.0  # half fair, half poor
    out = scorer.score_from_logits(logits)
    assert torch.allclose(out.score, torch.tensor([10.0, 4.25]))
    assert torch.allclose(out.std, torch.tensor([0.0, 0.75]), atol=1e-5)


def test_same_image_alone_or_in_a_padded_batch_of_16(scorer):
    images = [painting(40 + 13 * i, 64 + 7 * (i % 5), seed=i) for i in range(16)]
    batch = scorer.score(images)
    lengths = scorer.encode(images, ["q"] * 16)["attention_mask"].sum(-1)
    if scorer.family.name == "qwen2_5_vl":
        assert len(set(lengths.tolist())) > 1  # the batch really is padded
    for i in (0, 7, 15):
        alone = scorer.score([images[i]])
        assert abs(float(alone.score[0]) - float(batch.score[i])) < 1e-5
        assert torch.allclose(alone.level_probs[0], batch.level_probs[i], atol=1e-5)


def test_gradients_reach_the_pixels(scorer):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    out = scorer.score(x)
    assert out.score.requires_grad
    out.score.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_encode_is_left_padded_with_labels_on_answers_only(scorer):
    images = [painting(64, 64), painting(200, 90, seed=2)]
    answers = ["The quality of the painting is good.", "The quality of the painting is bad."]
    batch = scorer.encode(images, ["Rate it.", "How would you rate the quality of this painting?"], answers=answers)
    pad = scorer.tokenizer.pad_token_id
    for row, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
        n_pad = int((mask == 0).sum())
        assert (row[:n_pad] == pad).all() and mask[n_pad:].all()
        answer_ids = row[labels != -100]
        text = scorer.tokenizer.decode(answer_ids)
        assert text.strip().startswith("The quality of the painting is")
        assert answer_ids[-1] == scorer.tokenizer.convert_tokens_to_ids(scorer.family.end_of_turn)
    level = batch["labels"][0][batch["labels"][0] != -100]
    assert scorer.level_token_ids[1] in level  # " good"
    if scorer.family.name == "qwen2_5_vl":
        image_id = scorer.model.config.image_token_id
        assert torch.equal(batch["mm_token_type_ids"].bool(), batch["input_ids"] == image_id)
        assert batch["image_grid_thw"].shape == (2, 3)
    out = scorer(**batch)
    assert torch.isfinite(out.loss)


def test_score_prompt_ends_with_the_answer_prefix(scorer):
    batch = scorer.encode(torch.rand(1, 3, 64, 64), [scorer.score_question])
    text = scorer.tokenizer.decode(batch["input_ids"][0])
    assert text.endswith("The quality of the painting is")


def test_aspect_changes_the_prompt_and_the_score(scorer):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    overall, composition = scorer.score(x), scorer.score(x, aspect="composition")
    assert not torch.allclose(overall.score, composition.score)
    question, prefix = scorer.prompt_for("composition")
    text = scorer.tokenizer.decode(scorer.encode(x[:1], [question], answer_prefix=prefix)["input_ids"][0])
    assert "composition" in text and text.endswith(prefix) and prefix != scorer.answer_prefix
    assert scorer.level_ids_for("composition").shape == (5,)
    assert torch.equal(scorer.level_ids_for(None), scorer.level_token_ids)
    with pytest.raises(ValueError, match="unknown aspect 'compositon'.*did you mean composition"):
        scorer.score(x, aspect="compositon")


def test_describe_returns_one_string_per_image(scorer):
    texts = scorer.describe(torch.rand(2, 3, 64, 64), max_new_tokens=5)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_level_word_that_is_not_one_token_raises_naming_it(scorer):
    from artquant_core._scorer_defaults import LevelScale

    scale = LevelScale(("excellent", "magnificent", "fair", "poor", "bad"), (10.0, 7.5, 5.0, 3.5, 1.0))
    with pytest.raises(ValueError, match="level word 'magnificent' is not a single token.*tokenised as"):
        ArtQuantScorer(scorer.model, scorer.tokenizer, scorer.image_processor, scale=scale)


def test_seeded_random_init_is_reproducible():
    a = build_tiny_scorer(seed=3, pretrained=False)
    b = build_tiny_scorer(seed=3, pretrained=False)
    c = build_tiny_scorer(seed=4, pretrained=False)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    n = sum(p.numel() for p in a.parameters())
    assert 1_000_000 < n < 10_000_000


def test_pretrained_weights_missing_is_a_clear_error(monkeypatch, tmp_path):
    import artquant_core.tiny as tiny

    monkeypatch.setattr(tiny, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="tiny scorer's trained weights are not in this install"):
        build_tiny_scorer(pretrained=True)


def test_linear_patch_embed_matches_the_conv():
    ref = build_tiny_scorer(pretrained=False, config=TinyScorerConfig(vision_layers=1, text_layers=1))
    conv_model = type(ref.model)(ref.model.config)
    conv_model.load_state_dict(ref.model.state_dict())
    conv = ArtQuantScorer(conv_model.eval(), ref.tokenizer, ref.image_processor, linear_patch_embed=False)
    assert isinstance(conv.model.model.visual.patch_embed.proj, torch.nn.Conv3d)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4), requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    a, b = ref.score(x), conv.score(y)
    assert torch.allclose(a.score, b.score, atol=1e-5)
    a.score.sum().backward()
    b.score.sum().backward()
    assert torch.allclose(x.grad, y.grad, rtol=1e-3, atol=1e-7)


def test_record_style_image_placeholder_in_questions_is_dropped(scorer):
    x = torch.rand(1, 3, 64, 64)
    a = scorer.encode(x, ["<image>\nHow would you rate the quality of this painting?"])
    b = scorer.encode(x, ["How would you rate the quality of this painting?"])
    assert torch.equal(a["input_ids"], b["input_ids"])


def test_tiny_qwen_language_model_can_tell_image_rows_and_columns_apart():
    """M-RoPE gives rows and columns the lowest rotary frequencies; the tiny default's base keeps them usable."""
    scorer = build_tiny_scorer(pretrained=False, config=TinyScorerConfig(vision_layers=1, text_layers=1))
    rotary = scorer.model.model.language_model.rotary_emb
    t, h, w = rotary.mrope_section
    row_freqs, col_freqs = rotary.inv_freq[t:t + h], rotary.inv_freq[t + h:t + h + w]
    # radians the query-key rotation turns per token step along a row / a column of the 4x4 grid
    assert float(row_freqs.min()) > 0.5 and float(col_freqs.min()) > 0.5
    usual = build_tiny_scorer(pretrained=False, config=TinyScorerConfig(vision_layers=1, text_layers=1,
                                                                      text_rope_theta=10000.0))
    assert float(usual.model.model.language_model.rotary_emb.inv_freq[t + h:].max()) < 0.01
