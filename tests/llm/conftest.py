import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")


def tiny_llama(family: str = "llama", seed: int = 0):
    torch.manual_seed(seed)
    kw = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=128, max_position_embeddings=128)
    if family == "qwen2":
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**kw))
    if family == "mistral":
        return transformers.MistralForCausalLM(transformers.MistralConfig(**kw))
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**kw))


def tiny_gpt2(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=128,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg)


def tiny_opt(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.OPTConfig(num_hidden_layers=2, hidden_size=64, ffn_dim=128, num_attention_heads=4,
                                 vocab_size=128, word_embed_proj_dim=64, max_position_embeddings=128,
                                 bos_token_id=0, eos_token_id=0, pad_token_id=1)
    return transformers.OPTForCausalLM(cfg)


def tiny_bert(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, vocab_size=128, max_position_embeddings=128)
    return transformers.BertModel(cfg)


def tiny_vit(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=128, image_size=32, patch_size=8)
    return transformers.ViTModel(cfg)


CAUSAL = {"llama": lambda: tiny_llama("llama"), "qwen2": lambda: tiny_llama("qwen2"),
          "mistral": lambda: tiny_llama("mistral"), "gpt2": tiny_gpt2, "opt": tiny_opt}
ENCODERS = {"bert": tiny_bert, "vit": tiny_vit}


def example_inputs(family: str, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    if family == "vit":
        return {"pixel_values": torch.randn(2, 3, 32, 32, generator=g)}
    return {"input_ids": torch.randint(2, 128, (2, 24), generator=g)}


def main_output(model, inputs):
    with torch.no_grad():
        out = model(**inputs)
    return out.logits if hasattr(out, "logits") and out.logits is not None else out.last_hidden_state


RELOAD_DIFF = textwrap.dedent("""
    import sys, torch
    from transformers import AutoModelForCausalLM
    from prunekit.io import load_tensors
    from prunekit.llm import load_pruned
    folder, plain = sys.argv[1], sys.argv[2] == "plain"
    auto = AutoModelForCausalLM
    model = (auto.from_pretrained(folder) if plain else load_pruned(folder, auto)).eval()
    exp = load_tensors(folder + "/expected.safetensors")
    with torch.no_grad():
        print((model(input_ids=exp["input_ids"]).logits - exp["logits"]).abs().max().item())
""")


def save_with_logits(model, folder, inputs) -> None:
    """``model`` saved as a Hugging Face folder, with its logits on ``inputs`` beside it."""
    from prunekit.io import save_tensors
    from prunekit.llm import save_pretrained_model

    save_pretrained_model(model, folder)
    save_tensors({"logits": main_output(model, inputs).contiguous(), "input_ids": inputs["input_ids"]},
                 Path(folder) / "expected.safetensors")


def fresh_reload_diff(folder, plain: bool = False) -> float:
    """Max |logits diff| of ``folder`` reloaded in a new Python process (``from_pretrained`` when
    ``plain``, else ``load_pruned``) against the logits :func:`save_with_logits` stored."""
    out = subprocess.run([sys.executable, "-c", RELOAD_DIFF, str(folder), "plain" if plain else "pruned"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return float(out.stdout.strip().splitlines()[-1])


def word_level_tokenizer(text: str):
    """A word-level fast tokenizer trained on ``text`` (saved next to tiny test models)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([text], trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
