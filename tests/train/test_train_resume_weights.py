"""Resuming restores the checkpoint's weights, not only its step counter."""

from __future__ import annotations


def _params(path):
    from medgr2_hf.vlm import load_vlm

    model, _ = load_vlm(path)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resume_continues_from_the_checkpoint_weights(tiny_qwen, samples, train_context, tmp_path):
    from medgr2_trl.options import SFTOptions
    from medgr2_trl.sft import SFTPolicyTrainer

    out = tmp_path / "sft"
    first = SFTOptions(max_steps=2, save_steps=2, per_device_train_batch_size=8, num_threads=1,
                       learning_rate=5e-3, warmup_ratio=0.0)
    SFTPolicyTrainer(first).train(samples, tiny_qwen, out, train_context)
    saved = _params(out / "checkpoint-2")
    initial = _params(tiny_qwen)
    assert any(not (saved[k] == initial[k]).all() for k in saved), "training changed nothing"

    # same max_steps: the resumed run has nothing left to do, so its final model is the checkpoint
    result = SFTPolicyTrainer(first).train(samples, tiny_qwen, out, train_context)
    assert result.metrics["resumed_from_step"] == 2
    final = _params(result.checkpoint)
    for k in saved:
        assert (final[k] == saved[k]).all(), f"{k} was not restored from the checkpoint"
