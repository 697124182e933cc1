"""A Hugging Face tokenizer built from the vocabulary inside a GGUF file (for bench/loadgen.py).

aiperf counts tokens with a Hugging Face tokenizer and, offline, cannot download one (even
`--tokenizer builtin` tries). The GGUF file of the embedded model carries its whole BPE
vocabulary (tokens, merges, token types), so this rebuilds `tokenizer.json` from it with the
`gguf` and `tokenizers` packages. Neither is a kube-llm dependency: this script runs with the
aiperf environment's Python (`.bench-venv/aiperf`), and bench/loadgen_aiperf.py compares the ids
it gives with the server's own `/extras/tokenize` before trusting it.

    .bench-venv/aiperf/bin/python bench/loadgen_tokenizer.py MODEL.gguf OUT_DIR < texts.json

writes OUT_DIR/tokenizer.json and OUT_DIR/tokenizer_config.json, reads a JSON list of texts on
stdin and prints a JSON list of their token ids (special tokens parsed, no BOS added).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

# GGUF token types (llama.cpp's llama_token_type): these are matched whole, never split by BPE.
_CONTROL = 3
_USER_DEFINED = 4


def _field(reader: Any, name: str) -> Any:
    field = reader.fields.get(name)
    if field is None:
        raise SystemExit(f"the GGUF file has no {name}")
    return field.contents()


def build(gguf_path: Path) -> tuple[Tokenizer, dict[str, Any]]:
    """The tokenizer and its `tokenizer_config.json` from a GGUF file's BPE vocabulary."""
    reader = gguf.GGUFReader(str(gguf_path))
    kind = _field(reader, "tokenizer.ggml.model")
    pre = _field(reader, "tokenizer.ggml.pre")
    if kind != "gpt2" or pre not in ("smollm", "gpt2", "default"):
        # Other pre-tokenizers (llama3, qwen2, ...) split text with other rules: not built here.
        raise SystemExit(f"only a GPT-2 style BPE vocabulary is supported, not {kind}/{pre}")
    tokens: list[str] = list(_field(reader, "tokenizer.ggml.tokens"))
    types: list[int] = list(_field(reader, "tokenizer.ggml.token_type"))
    merges = [tuple(line.split(" ", 1)) for line in _field(reader, "tokenizer.ggml.merges")]
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        # llama.cpp's "smollm" splits every digit apart before the GPT-2 rules.
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    else:
        tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [
            AddedToken(token, special=True, normalized=False)
            for token, kind_of in zip(tokens, types, strict=True)
            if kind_of in (_CONTROL, _USER_DEFINED)
        ]
    )

    def token(name: str) -> str | None:
        field = reader.fields.get(f"tokenizer.ggml.{name}_token_id")
        return None if field is None else tokens[int(field.contents())]

    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token("bos"),
        "eos_token": token("eos"),
        "unk_token": token("unknown"),
        "pad_token": token("padding"),
        "add_bos_token": False,
        "model_max_length": int(_field(reader, f"{_field(reader, 'general.architecture')}"
                                       ".context_length")),
    }  # fmt: skip
    template = reader.fields.get("tokenizer.chat_template")
    if template is not None:
        config["chat_template"] = template.contents()
    return tokenizer, config


def main() -> None:
    """Write the tokenizer files, then print the ids of the texts given on stdin."""
    gguf_path, out = Path(sys.argv[1]), Path(sys.argv[2])
    tokenizer, config = build(gguf_path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    texts = json.load(sys.stdin)
    print(json.dumps([tokenizer.encode(text, add_special_tokens=False).ids for text in texts]))


if __name__ == "__main__":
    main()
