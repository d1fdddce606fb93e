"""The eager (nn.Module) CLIP of package clip's fixture generator
(clip/testdata/gen.py) with the weights of a TorchScript archive in the
official format: what OpenAI's clip.load(jit=False) runs, used as PyTorch
eager by the benchmarks (bench/encoder/torch_encode.py --eager,
bench/gpu/torch_speed.py) and by bench/gpu/parity.py.

fp16 is what clip.load does on a GPU: Conv, Linear, attention and
projection weights in fp16 (as the archive stores them), LayerNorm computed
in fp32; fp32 converts everything to fp32.
"""
import contextlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clip", "testdata"))

import torch  # noqa: E402

import gen as clipgen  # noqa: E402


def load_eager(path, precision, device):
    """The archive's weights in gen.TinyCLIP, with fp16 as clip.load has it."""
    sd = torch.jit.load(path, map_location="cpu").state_dict()
    vision_layers = sum(1 for k in sd if k.startswith("visual.transformer.resblocks.") and k.endswith(".attn.in_proj_weight"))
    vit = "visual.proj" in sd
    text_width = sd["ln_final.weight"].shape[0]
    cfg = dict(
        embed_dim=sd["text_projection"].shape[1],
        resolution=int(sd["input_resolution"].item()),
        context=int(sd["context_length"].item()),
        vocab=int(sd["vocab_size"].item()),
        text_width=text_width,
        text_layers=sum(1 for k in sd if k.startswith("transformer.resblocks.") and k.endswith(".attn.in_proj_weight")),
    )
    if vit:
        cfg.update(vision_layers=vision_layers, vision_width=sd["visual.conv1.weight"].shape[0],
                   patch=sd["visual.conv1.weight"].shape[-1])
    else:
        counts = tuple(len({k.split(".")[2] for k in sd if k.startswith("visual.layer%d." % i)}) for i in range(1, 5))
        cfg.update(vision_layers=counts, vision_width=sd["visual.layer1.0.conv1.weight"].shape[0], patch=None)
    # Initialising on the GPU is much faster for the large models; torch 1.x
    # cannot use a device as a context.
    where = torch.device(device) if hasattr(torch.device, "__enter__") else contextlib.nullcontext()
    with where:
        model = clipgen.TinyCLIP(**cfg).eval()
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    if precision == "fp16":
        names = clipgen.fp16_names(model)
        for n, p in model.named_parameters():
            if n in names:
                p.data = p.data.half()
    model = model.to(device)
    for m in model.modules():  # the causal masks are plain attributes
        if isinstance(m, clipgen.Block) and m.mask is not None:
            m.mask = m.mask.to(device)
    return model, cfg["resolution"]
