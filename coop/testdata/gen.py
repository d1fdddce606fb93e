"""Writes the coop package's test fixtures: what a CoOp prompt learner
computes in PyTorch on the small ViT CLIP of the clip package's fixtures.

The model is the clip package's TinyCLIP (clip/testdata/gen.py, imported by
path) with the weights of clip/testdata/vit_sd.pt, run in fp32 (the weights
are fp16 values, as on a CPU). The prompt learner is written here from the
description in docs/methods.md section 3; it is not CoOp's code.

The tiny model has a 1024-token vocabulary, so the prompts are tokenized by
a word-level toy tokenizer instead of CLIP's BPE: lower case, split on white
space, a trailing "." is a token of its own, ids from VOCAB below (written to
tokenizer.json for the Go test), start 1022, end 1023, padding 0, 77 tokens.

For three class names, for the class token at the end, middle and front, and
for three kinds of context (16 random vectors shared by all classes, 5
random vectors per class (CSC), and the words "a photo of a"), it records:
the assembled prompt embeddings, the end-of-text positions, the text
features, the logits for fixed image features, the cross-entropy loss, the
gradient with respect to the context, and the context after one SGD step
(lr 0.002, momentum 0.9, weight decay 5e-4).

Files (all in this directory):
  tokenizer.json     the toy vocabulary and special ids.
  reference.json     class names, image features, labels, logit scale and
                     per case: options, end-of-text positions, name lengths,
                     the number of prompt rows stored, text features, logits,
                     loss.
  ctx_rand16.npy     the random shared context [16, 128] (float32).
  ctx_csc5.npy       the random class-specific context [3, 5, 128].
  ctx_words.npy      the context "a photo of a" initializes, [4, 128].
  CASE_prompts.npy   the first K rows of the prompts, [3, K, 128]; the rows
                     after K repeat row K-1 (padding).
  CASE_grad.npy      d loss / d ctx.
  CASE_ctx_step.npy  ctx after one SGD step.

Run with a Python that has torch and numpy (the script finds one: $PYTHON,
/usr/bin/python3, python3).
"""
import importlib.util
import json
import os
import sys


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import findpython  # noqa: E402

findpython.reexec("torch", "numpy")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CLIP_TESTDATA = os.path.join(HERE, "..", "..", "clip", "testdata")

SOT, EOT, PAD, CONTEXT = 1022, 1023, 0, 77
VOCAB = {
    "x": 343, "a": 320, "photo": 1000, "of": 539, ".": 269,
    "cat": 700, "golden": 701, "retriever": 702, "sea": 703, "lion": 704, "pup": 705,
}
CLASSES = ["cat", "golden retriever", "sea lion pup"]
LABELS = [0, 1, 2, 1]
WORDS = "a photo of a"
LR, MOMENTUM, WEIGHT_DECAY = 0.002, 0.9, 5e-4


def load_clip_module():
    path = os.path.join(CLIP_TESTDATA, "gen.py")
    spec = importlib.util.spec_from_file_location("clip_fixture_gen", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_model():
    """The clip fixtures' ViT model in fp32, checked against their outputs."""
    cg = load_clip_module()
    model = cg.TinyCLIP(embed_dim=32, resolution=32, vision_layers=2, vision_width=64, patch=8,
                        context=CONTEXT, vocab=cg.VOCAB, text_width=128, text_layers=2).eval()
    sd = torch.load(os.path.join(CLIP_TESTDATA, "vit_sd.pt"))
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    assert (cg.SOT, cg.EOT) == (SOT, EOT)
    tokens = torch.from_numpy(np.load(os.path.join(CLIP_TESTDATA, "vit_tokens.npy")))
    want = torch.from_numpy(np.load(os.path.join(CLIP_TESTDATA, "vit_text_features.npy")))
    with torch.no_grad():
        got = model.encode_text(tokens)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), "vit_sd.pt does not reproduce vit_text_features.npy"
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def tokenize(text):
    words = []
    for w in text.lower().split():
        if w.endswith(".") and len(w) > 1:
            words += [w[:-1], "."]
        else:
            words.append(w)
    ids = [SOT] + [VOCAB[w] for w in words] + [EOT]
    assert len(ids) <= CONTEXT, text
    return ids + [PAD] * (CONTEXT - len(ids))


def assemble(emb, ctx, position, m, name_lens, csc):
    """Prompt embeddings [C, 77, W] from the embedded skeletons emb."""
    out = []
    for c in range(emb.shape[0]):
        prefix, suffix = emb[c, :1], emb[c, 1 + m:]
        cc = ctx[c] if csc else ctx
        n = name_lens[c]
        if position == "end":
            parts = [prefix, cc, suffix]
        elif position == "middle":
            h = m // 2
            parts = [prefix, cc[:h], suffix[:n], cc[h:], suffix[n:]]
        elif position == "front":
            parts = [prefix, suffix[:n], cc, suffix[n:]]
        else:
            raise ValueError(position)
        out.append(torch.cat(parts, dim=0))
    return torch.stack(out)


def save(name, t):
    np.save(os.path.join(HERE, name + ".npy"), np.ascontiguousarray(t.detach().numpy().astype(np.float32)))


def run_case(model, name, position, m, ctx0, csc, image_features, labels, words):
    placeholder = words if words else " ".join(["X"] * m)
    ids = torch.tensor([tokenize(placeholder + " " + c + ".") for c in CLASSES])
    name_lens = [tokenize(c).index(EOT) - 1 for c in CLASSES]
    eot = ids.argmax(dim=-1)
    with torch.no_grad():
        emb = model.token_embedding(ids)
    ctx = torch.nn.Parameter(ctx0.clone())
    prompts = assemble(emb, ctx, position, m, name_lens, csc)
    g = model.encode_text_embeddings(prompts, eot)
    gn = g / g.norm(dim=-1, keepdim=True)
    fn = image_features / image_features.norm(dim=-1, keepdim=True)
    logits = model.logit_scale.exp() * fn @ gn.t()
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    grad = ctx.grad.clone()
    opt = torch.optim.SGD([ctx], lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    opt.step()

    k = int(eot.max()) + 2
    tail = prompts[:, k - 1:]
    assert torch.equal(tail, tail[:, :1].expand_as(tail)), "rows after K are not all padding"
    save(name + "_prompts", prompts[:, :k])
    save(name + "_grad", grad)
    save(name + "_ctx_step", ctx)
    print("%-14s loss %.5f  |grad| %.3e  eot %s" % (name, loss.item(), grad.norm().item(), eot.tolist()))
    return {
        "name": name, "position": position, "n_ctx": m, "class_specific": csc, "ctx_init": words,
        "eot": eot.tolist(), "name_lens": name_lens, "prompt_rows": k,
        "text_features": g.detach().tolist(), "logits": logits.detach().tolist(), "loss": loss.item(),
    }


def main():
    gen = torch.Generator().manual_seed(777)
    model = load_model()
    width = model.token_embedding.weight.shape[1]
    image_features = torch.randn(len(LABELS), model.text_projection.shape[1], generator=gen)
    labels = torch.tensor(LABELS)
    rand16 = 0.02 * torch.randn(16, width, generator=gen)
    csc5 = 0.02 * torch.randn(len(CLASSES), 5, width, generator=gen)
    save("ctx_rand16", rand16)
    save("ctx_csc5", csc5)
    with torch.no_grad():
        words = model.token_embedding(torch.tensor([tokenize(WORDS)]))[0, 1:1 + len(WORDS.split())]
    save("ctx_words", words)

    cases = []
    for position in ("end", "middle", "front"):
        cases.append(run_case(model, "rand16_" + position, position, 16, rand16, False,
                              image_features, labels, ""))
        cases.append(run_case(model, "csc5_" + position, position, 5, csc5, True,
                              image_features, labels, ""))
        cases.append(run_case(model, "words_" + position, position, 4, words, False,
                              image_features, labels, WORDS))

    with open(os.path.join(HERE, "tokenizer.json"), "w") as f:
        json.dump({"vocab": VOCAB, "sot": SOT, "eot": EOT, "pad": PAD, "context_length": CONTEXT},
                  f, indent=1, sort_keys=True)
        f.write("\n")
    ref = {
        "model": "clip/testdata/vit.pt",
        "classes": CLASSES,
        "labels": LABELS,
        "image_features": image_features.tolist(),
        "logit_scale": model.logit_scale.exp().item(),
        "lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY,
        "cases": cases,
    }
    with open(os.path.join(HERE, "reference.json"), "w") as f:
        json.dump(ref, f)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(HERE, n)) for n in os.listdir(HERE)
                if n.endswith((".npy", ".json")))
    print("coop fixtures: %.0f kB in total (torch %s)" % (total / 1e3, torch.__version__))


if __name__ == "__main__":
    main()
