"""δ-mem training plumbing: the public recording API, the generic trainer lookup, curriculum episodes
and the held-out statistics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_lm

from harness.registry import ConfigError
from methods._deltamem import attach, detach


def test_record_keeps_per_token_beta_and_reads_and_default_write_holds_state():
    lm = tiny_lm("qwen3")
    ad = attach(lm.model, rank=4)
    try:
        ad.queue_ids([[0, 0, -1, 0, -1]])
        with ad.record() as rec:
            lm.model(input_ids=torch.tensor([[5, 6, 7, 8, 9]]))
            with pytest.raises(RuntimeError, match="already active"):
                with ad.record():
                    pass
        assert ad.io.record is None
        b = rec.token_beta(0)[0]  # [T], mean over layers
        assert b.shape == (5,) and (b[[2, 4]] == 0).all() and (b[[0, 1, 3]] > 0).all()
        manual = torch.stack([x[0][0, [0, 1, 3]].mean() for _, x in sorted(rec.beta.items())])
        assert torch.allclose(rec.mean_beta(), manual)
        assert rec.concat_reads(0).shape == (1, 5, 4 * len(ad.layers))
        before = {i: l.state.clone() for i, l in ad.layers.items()}
        ad.set_default_write(False)
        lm.model(input_ids=torch.tensor([[3, 4]]))
        assert all(torch.equal(before[i], l.state) for i, l in ad.layers.items())  # read only: state held exactly
    finally:
        detach(lm.model)


def test_trainer_is_found_through_the_method_registry_and_harness_has_no_deltamem_import():
    from omegaconf import OmegaConf

    from harness import train
    from methods import REGISTRY
    from methods._deltamem.train import TrainConfig

    assert REGISTRY.get("deltamem").trainer().Config is TrainConfig
    assert REGISTRY.get("window").trainer() is None
    cfg = OmegaConf.create({"method": {"name": "window"}, "model": {"name": "tiny_random", "source": "tiny_random"}, "train": {}})
    with pytest.raises(ConfigError, match="'method'.*trainable methods: deltamem"):
        train.run(cfg)
    for f in Path(train.__file__).parent.rglob("*.py"):
        assert "_deltamem" not in f.read_text(), f


def test_curriculum_episodes_place_and_key_length():
    from methods._deltamem.data import episode
    from methods._deltamem.episodes import encode
    from methods._deltamem.train import Stage, TrainConfig, stage_at

    tok = tiny_lm("gemma3").tokenizer
    assert episode(tok, "train", 3, 64) == episode(tok, "train", 3, 64, digits=(3, 7), place=None)  # defaults unchanged
    for i in range(10):
        ep = episode(tok, "train", i, 40, kind="code", digits=(1, 1), place=1.0)
        assert len(ep.key) == 1 and ep.facts[-1][1] == len(ep.write)  # the fact is the last sentence
        first = episode(tok, "train", i, 40, kind="code", digits=(2, 3), place=0.0)
        assert 2 <= len(first.key) <= 3 and first.write[first.facts[0][0]:].startswith(("The", "Note", "Your"))
    enc = encode(tok, episode(tok, "heldout", 0, 30, kind="code", place=1.0))
    key_toks = [t for t, lab in zip(enc["write"], enc["label"]) if lab == 2]
    assert "".join(tok.decode([t]) for t in key_toks).replace(" ", "") in episode(tok, "heldout", 0, 30, kind="code", place=1.0).key * 2
    tc = TrainConfig(steps=10, stages=[{"until": 4, "tokens": 8, "digits": [1, 1]}, {"tokens": 16}])
    assert [stage_at(tc, s).tokens for s in (0, 3, 4, 9)] == [8, 8, 16, 16] and isinstance(stage_at(tc, 0), Stage)
    with pytest.raises(ConfigError, match=r"train.stages\[0\].*digits"):
        TrainConfig(stages=[{"digits": [3, 1]}])
    with pytest.raises(ConfigError, match="did you mean 'train.stages\\[0\\].tokens'"):
        TrainConfig(stages=[{"tokenz": 8}])


def test_answer_end_is_trained_after_the_key():
    """Setting.end appends a terminator to the answer (scored like it; a digit-free token that the
    per-digit count leaves out), the same episode otherwise; "\\n" typed on a command line decodes."""
    from methods._deltamem.episodes import Setting, encode
    from methods._deltamem.train import TrainConfig, stage_at

    tok = tiny_lm("gemma3").tokenizer
    plain, ended = Setting(tokens=32, digits=(2, 4), kind="code"), Setting(tokens=32, digits=(2, 4), kind="code", end="\n")
    a, b = plain.episode(tok, "train", 5), ended.episode(tok, "train", 5)
    assert (b.write, b.key, b.answer) == (a.write, a.key, a.answer + "\n")
    ea, eb = encode(tok, a), encode(tok, b)
    assert eb["answer"][: len(ea["answer"])] == ea["answer"] and len(eb["answer"]) > len(ea["answer"])
    assert not any(tok.decode([t]).strip().isdigit() for t in eb["answer"][len(ea["answer"]):])
    assert Setting(end="\\n").end == "\n" and "then '\\n'" in ended.label()
    assert stage_at(TrainConfig(stages=[{"tokens": 8, "end": "\\n"}]), 0).end == "\n"
    with pytest.raises(ConfigError, match="'end'"):
        Setting(end=" END")


def test_heldout_statistics():
    from methods._deltamem.heldout import _ratio_ci, wilson

    assert wilson(0, 10) == [0.0, 0.2775] and wilson(10, 10)[1] == 1.0 and wilson(0, 0) is None
    lo, hi = _ratio_ci([[1, 2, 0, 3]], [3, 3, 3, 3])[0]
    assert lo <= 0.5 <= hi and 0 <= lo and hi <= 1
    assert _ratio_ci([[2, 2, 2]], [2, 2, 2])[0] == [1.0, 1.0]


@pytest.mark.parametrize("history_kv", [False, True])
def test_a_left_padded_batch_equals_its_episodes_one_by_one(history_kv):
    from methods._deltamem.data import episode
    from methods._deltamem.episodes import digit_ids, encode, make_head, run_episode

    lm = tiny_lm("gemma3")
    tok = lm.tokenizer
    ad = attach(lm.model, rank=4)
    try:
        for layer in ad.layers.values():  # non-zero corrections, so the state matters for the logits
            torch.nn.init.normal_(layer.delta["o"].weight, std=0.5)
        encs = [encode(tok, episode(tok, "train", i, n, kind="code", digits=(d, d))) for i, n, d in ((0, 20, 1), (1, 36, 3), (2, 28, 2))]
        dv = digit_ids(tok)
        head = make_head(ad)
        with torch.no_grad():
            both = run_episode(lm.model, ad, encs, history_kv=history_kv, head=head, digit_vocab=dv)
            for b, e in enumerate(encs):
                one = run_episode(lm.model, ad, e, history_kv=history_kv, head=head, digit_vocab=dv)
                assert torch.allclose(one["logits"][0], both["logits"][b], atol=1e-3)  # masked vs unmasked attention sums
                T = len(e["write"])
                assert torch.allclose(one["beta_tokens"][0], both["beta_tokens"][b, -T:], atol=1e-5)
                assert (both["beta_tokens"][b, :-T] == 0).all()  # padding is never written
    finally:
        detach(lm.model)


def test_train_yaml_lists_every_trainer_field_with_its_default():
    from dataclasses import MISSING, fields

    import yaml

    from methods._deltamem.train import TrainConfig

    cfg = yaml.safe_load((Path(__file__).parents[1] / "configs" / "train.yaml").read_text())["train"]
    want = {f.name: (f.default if f.default is not MISSING else f.default_factory()) for f in fields(TrainConfig)}
    assert set(cfg) == set(want)
    differ = {k: (cfg[k], want[k]) for k in want if cfg[k] != want[k] and k not in ("ckpt_dir",)}  # ckpt_dir interpolates the model name
    assert differ == {}
