"""GPT-2: tokenizer offline, exact parameter count, weight mapping from Hugging Face, KV cache,
sampling options and their errors, sliding-window data."""

import warnings

import pytest
import torch

from course_lib.batching import BatchingError, SlidingWindowDataset, make_dataloader
from course_lib.bpe import BPE_SHA256, EOT_ID, BPETokenizer, TokenizerFileError, ensure_bpe_file, gpt2_tokenizer
from course_lib.generation import SamplingError, generate, next_token_probs
from course_lib.models import GPT
from course_lib.models.gpt2 import convert_hf_state_dict, gpt2_config, gpt_from_hf_state_dict, padded_vocab
from course_lib.training import TrainConfig, train


def test_bpe_table_is_local_and_verified():
    path = ensure_bpe_file(download=False)  # setup fetched it; tests never download
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() == BPE_SHA256


def test_gpt2_encoding_matches_openai_ids():
    enc = gpt2_tokenizer()
    assert enc.encode("Hello world") == [15496, 995]
    assert enc.n_vocab == 50257 and enc.eot_token == EOT_ID == 50256
    tok = BPETokenizer()
    text = "WREN: Why does Old Mourne ring twice?\n"
    assert tok.decode(tok.encode(text)) == text
    assert EOT_ID not in tok.encode("<|endoftext|>")  # text never fakes the special token


def test_missing_bpe_file_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_BPE_FILE", str(tmp_path / "nowhere" / "gpt2.tiktoken"))
    with pytest.raises(TokenizerFileError, match="make setup"):
        ensure_bpe_file(download=False)


def test_corrupt_bpe_file_is_not_used(tmp_path, monkeypatch):
    bad = tmp_path / "gpt2.tiktoken"
    bad.write_text("garbage")
    monkeypatch.setenv("COURSE_BPE_FILE", str(bad))
    with pytest.raises(TokenizerFileError, match="missing"):
        ensure_bpe_file(download=False)


def test_124m_preset_has_exactly_124_439_808_parameters():
    with torch.device("meta"):  # shapes only: no memory, no time
        model = GPT(gpt2_config("gpt2"))
    assert model.num_parameters() == 124_439_808


def test_unknown_preset():
    with pytest.raises(ValueError, match="gpt2-course-small"):
        gpt2_config("gpt5")


def test_hugging_face_weights_give_the_same_logits():
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.GPT2Config(vocab_size=101, n_positions=24, n_embd=32, n_layer=2, n_head=4,
                                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    hf_model = transformers.GPT2LMHeadModel(hf_config).eval()  # random weights: no download
    ours = gpt_from_hf_state_dict(hf_model.state_dict(),
                                  gpt2_config("gpt2-course-tiny", vocab_size=101, block_size=24, n_embd=32,
                                              n_head=4, n_layer=2)).eval()
    ids = torch.randint(101, (2, 24))
    with torch.no_grad():
        expected = hf_model(ids).logits
        assert torch.allclose(ours(ids), expected, atol=1e-5)
        ours.config.attn_impl = "manual"
        for block in ours.blocks:
            block.attn.impl = "manual"
        assert torch.allclose(ours(ids), expected, atol=1e-5)


def test_conversion_transposes_conv1d_weights():
    C = 8
    hf = {"wte.weight": torch.zeros(5, C), "wpe.weight": torch.zeros(4, C), "ln_f.weight": torch.ones(C),
          "ln_f.bias": torch.zeros(C)}
    shapes = {"ln_1": (C,), "ln_2": (C,), "attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C),
              "mlp.c_fc": (C, 4 * C), "mlp.c_proj": (4 * C, C)}
    for name, shape in shapes.items():
        hf[f"h.0.{name}.weight"] = torch.randn(shape)
        hf[f"h.0.{name}.bias"] = torch.zeros(shape[-1])
    ours = convert_hf_state_dict(hf, n_layer=1)
    assert ours["blocks.0.attn.qkv.weight"].shape == (3 * C, C)
    assert torch.equal(ours["blocks.0.ffn.fc.weight"], hf["h.0.mlp.c_fc.weight"].t())


@pytest.fixture
def tiny_gpt():
    torch.manual_seed(0)
    return GPT(gpt2_config("gpt2-course-tiny", vocab_size=97, block_size=48)).eval()


def test_kv_cache_greedy_equals_no_cache_token_for_token(tiny_gpt):
    prompt = torch.randint(97, (2, 5))
    plain = generate(tiny_gpt, prompt, 40, greedy=True)
    cached = generate(tiny_gpt, prompt, 40, greedy=True, use_cache=True)
    assert torch.equal(plain, cached)


def test_kv_cache_logits_match_full_forward(tiny_gpt):
    ids = torch.randint(97, (1, 12))
    cache = tiny_gpt.new_cache()
    first = tiny_gpt(ids[:, :7], cache)
    rest = tiny_gpt(ids[:, 7:], cache)  # several new tokens at once use the offset mask
    full = tiny_gpt(ids)
    assert torch.allclose(torch.cat([first, rest], dim=1), full, atol=1e-5)


def test_cache_keeps_generating_past_the_context(tiny_gpt):
    out = generate(tiny_gpt, torch.zeros(1, 1, dtype=torch.long), 120, use_cache=True, seed=0)
    assert out.shape == (1, 121)


def test_top_p_keeps_the_nucleus():
    probs = next_token_probs(torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])), top_p=0.7)
    assert torch.allclose(probs, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    best_only = next_token_probs(torch.tensor([[0.1, 5.0, 0.2]]), top_p=0.01)
    assert torch.equal(best_only, torch.tensor([[0.0, 1.0, 0.0]]))


@pytest.mark.parametrize("top_p", [0, -0.1, 1.5])
def test_top_p_outside_0_1_is_an_error(tiny_gpt, top_p):
    with pytest.raises(SamplingError, match=r"top_p must be in \(0, 1\]"):
        generate(tiny_gpt, torch.zeros(1, 1, dtype=torch.long), 3, top_p=top_p)


def test_max_new_tokens_below_one_is_an_error(tiny_gpt):
    with pytest.raises(SamplingError, match="max_new_tokens"):
        generate(tiny_gpt, torch.zeros(1, 1, dtype=torch.long), 0)


def test_long_prompt_is_left_truncated_with_a_warning(tiny_gpt):
    prompt = torch.randint(97, (1, 60))
    with pytest.warns(UserWarning, match="only the last 48"):
        out = generate(tiny_gpt, prompt, 2, greedy=True)
    assert out.shape == (1, 62) and torch.equal(out[:, :60], prompt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        generate(tiny_gpt, prompt[:, :10], 2)  # short prompts do not warn


def test_generation_stops_at_end_of_text(tiny_gpt):
    with torch.no_grad():
        tiny_gpt.lm_head.weight.zero_()
        tiny_gpt.ln_f.bias.zero_()
        tiny_gpt.ln_f.weight.zero_()
    # all logits equal -> greedy picks token 0; use it as the stop token
    out = generate(tiny_gpt, torch.ones(1, 3, dtype=torch.long), 50, greedy=True, stop_token=0)
    assert out.shape == (1, 4)


def test_sliding_windows_and_dataloader():
    ids = torch.arange(100)
    ds = SlidingWindowDataset(ids, context_length=10, stride=5)
    x, y = ds[3]
    assert torch.equal(x, torch.arange(15, 25)) and torch.equal(y, x + 1)
    assert len(ds) == len(range(0, 90, 5))
    loader = make_dataloader(ids, 10, 10, batch_size=4)
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 10) and torch.equal(yb, xb + 1)
    with pytest.raises(BatchingError, match="stride"):
        SlidingWindowDataset(ids, 10, 0)
    with pytest.raises(BatchingError, match="smaller batch_size"):
        make_dataloader(torch.arange(30), 10, 10, batch_size=8)


def test_train_accepts_a_dataloader(tiny_gpt):
    ids = torch.randint(97, (2000,))
    loader = make_dataloader(ids, 16, 16, batch_size=4)
    cfg = TrainConfig(max_iters=6, batch_size=4, block_size=16, eval_interval=3, eval_iters=1)
    history = train(tiny_gpt, loader, ids[:300], cfg, progress=False)
    assert history.steps == [0, 3, 6]


# ----------------------------------------------------------------------------- padded vocabulary

@pytest.fixture
def padded_pair():
    """The same GPT-2-style model twice: with the vocabulary padded (97 -> 128 rows), and without.
    The padding rows point along the final LayerNorm's bias, which is set large: their logits
    would beat every real token's, so any path that let them through would be noticed."""
    torch.manual_seed(0)
    cfg = gpt2_config("gpt2-course-tiny", vocab_size=97, block_size=24)
    plain = GPT(cfg).eval()
    padded = GPT(gpt2_config("gpt2-course-tiny", vocab_size=97, block_size=24, padded_vocab_size=128)).eval()
    with torch.no_grad():
        state = plain.state_dict()
        for name, tensor in padded.state_dict().items():
            if tensor.shape == state[name].shape:
                tensor.copy_(state[name])
            else:  # tok_emb / lm_head (tied): the real rows, then loud padding rows
                tensor[:97] = state[name]
                tensor[97:] = 5.0
        for model in (plain, padded):
            model.ln_f.bias.fill_(3.0)  # every final state ~ (3, ..., 3): padding logits ~ 5 * 3 * 32
    return plain, padded


def test_padded_logits_have_vocab_size_columns(padded_pair):
    plain, padded = padded_pair
    ids = torch.randint(97, (2, 10))
    assert padded.lm_head.weight.shape == (128, 32)
    with torch.no_grad():
        h = padded.hidden_states(ids)
        assert padded.lm_head(h).argmax(-1).min() >= 97  # uncut, the padding would win everywhere
        logits = padded(ids)
        assert logits.shape == (2, 10, 97)
        torch.testing.assert_close(logits, plain(ids))
        assert padded.logits(h[:, -1]).shape == (2, 97)


def test_generation_never_samples_a_padding_id(padded_pair):
    _, padded = padded_pair
    prompt = torch.randint(97, (4, 3))
    for use_cache in (False, True):
        out = generate(padded, prompt, 30, temperature=2.0, use_cache=use_cache, seed=1)
        assert out.max() < 97
        assert generate(padded, prompt, 5, greedy=True, use_cache=use_cache).max() < 97


def test_the_loss_ignores_the_padding(padded_pair):
    from course_lib.training import lm_loss

    plain, padded = padded_pair
    x, y = torch.randint(97, (2, 12)), torch.randint(97, (2, 12))
    loss = lm_loss(padded(x), y)
    torch.testing.assert_close(loss, lm_loss(plain(x), y))
    loss.backward()
    grad = padded.lm_head.weight.grad  # = the tied embedding's gradient
    assert grad[:97].abs().sum() > 0 and torch.count_nonzero(grad[97:]) == 0  # padding: never input, never scored


def test_hugging_face_weights_give_the_same_logits_with_padding():
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.GPT2Config(vocab_size=101, n_positions=24, n_embd=32, n_layer=2, n_head=4,
                                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    hf_model = transformers.GPT2LMHeadModel(hf_config).eval()
    config = gpt2_config("gpt2-course-tiny", vocab_size=101, block_size=24, n_embd=32, n_head=4, n_layer=2,
                         padded_vocab_size=padded_vocab(101))
    ours = gpt_from_hf_state_dict(hf_model.state_dict(), config).eval()
    assert ours.tok_emb.weight.shape == (128, 32) and torch.count_nonzero(ours.tok_emb.weight[101:]) == 0
    ids = torch.randint(101, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf_model(ids).logits, atol=1e-5, rtol=1e-5)


def test_train_gpt2_compiled_with_padding_on_a_cpu_then_generate(tmp_path, capsys):
    """--compile with the test-only backend aot_eager (no C++ or Triton compiler needed) and
    --pad-vocab yes, on the CPU; the run's folder then works with the generator CLI as it is."""
    from course_lib import generate as generate_cli
    from course_lib import train_gpt2
    from course_lib.checkpoints import load_model

    threads = torch.get_num_threads()
    try:
        code = train_gpt2.main(["--preset", "gpt2-course-tiny", "--steps", "2", "--global-batch", "2",
                                "--micro-batch", "2", "--block-size", "16", "--eval-batches", "1", "--device", "cpu",
                                "--compile", "--compile-backend", "aot_eager", "--pad-vocab", "yes",
                                "--out", str(tmp_path / "run")])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert code == 0
    assert "padded to 50,304" in out and "WITHOUT compiling" not in out and "ignored" not in out
    model = load_model(tmp_path / "run" / "model").model
    assert model.config.padded_vocab_size == 50304 and model.vocab_size == 50257
    assert generate_cli.main(["--checkpoint", str(tmp_path / "run"), "--prompt", "The tide", "-n", "6",
                              "--seed", "2"]) == 0
    assert capsys.readouterr().out.startswith("The tide")
