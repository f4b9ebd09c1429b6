#!/usr/bin/env python3
"""Writes tests/reference/vit_reference.bin: a tiny ViT in PyTorch (the same
architecture as core/vit.h), its weights in our parameter names and layouts,
an input batch, and PyTorch's logits, loss and parameter gradients.

core_test's ReferenceTest loads the weights into our model and must
reproduce the logits and every gradient. Regenerate with Debian's
python3-torch: /usr/bin/python3 tests/reference/make_vit_reference.py

File format (little endian): repeated records of
  int32 name_len, name bytes, int32 ndim, int64 dims[ndim], float32 data[prod(dims)]
"""
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

B, H, W, C, P, D, L, HEADS, M, K = 3, 8, 8, 2, 4, 12, 2, 3, 20, 5


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D, eps=1e-6)
        self.attn = nn.MultiheadAttention(D, HEADS, batch_first=True)
        self.ln2 = nn.LayerNorm(D, eps=1e-6)
        self.fc1 = nn.Linear(D, M)
        self.fc2 = nn.Linear(M, D)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))  # exact (erf) GELU


class ViT(nn.Module):
    def __init__(self, pooling):
        super().__init__()
        self.pooling = pooling
        self.patch = nn.Conv2d(C, D, P, P)
        T = (H // P) * (W // P) + (1 if pooling == 'token' else 0)
        self.cls = nn.Parameter(torch.randn(1, 1, D))
        self.pos = nn.Parameter(torch.randn(1, T, D))
        self.blocks = nn.ModuleList([Block() for _ in range(L)])
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self.head = nn.Linear(D, K)

    def forward(self, x):  # x: [B, H, W, C]
        t = self.patch(x.permute(0, 3, 1, 2)).flatten(2).transpose(1, 2)
        if self.pooling == 'token':
            t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], 1)
        t = t + self.pos
        for b in self.blocks:
            t = b(t)
        t = self.norm(t)
        pooled = t[:, 0] if self.pooling == 'token' else t.mean(1)
        return self.head(pooled)


def ours(model):
    """(name, tensor, grad) in our parameter names and layouts."""
    out = [('embedding/kernel', lambda p: p.permute(2, 3, 1, 0), model.patch.weight),
           ('embedding/bias', None, model.patch.bias)]
    if model.pooling == 'token':
        out.append(('cls', lambda p: p.reshape(D), model.cls))
    out.append(('pos_embedding', lambda p: p[0], model.pos))
    t = lambda p: p.t()
    for i, b in enumerate(model.blocks):
        n = f'encoder/block_{i}'
        out += [(f'{n}/ln1/scale', None, b.ln1.weight), (f'{n}/ln1/bias', None, b.ln1.bias),
                (f'{n}/attention/qkv/kernel', t, b.attn.in_proj_weight),
                (f'{n}/attention/qkv/bias', None, b.attn.in_proj_bias),
                (f'{n}/attention/out/kernel', t, b.attn.out_proj.weight),
                (f'{n}/attention/out/bias', None, b.attn.out_proj.bias),
                (f'{n}/ln2/scale', None, b.ln2.weight), (f'{n}/ln2/bias', None, b.ln2.bias),
                (f'{n}/mlp/fc1/kernel', t, b.fc1.weight), (f'{n}/mlp/fc1/bias', None, b.fc1.bias),
                (f'{n}/mlp/fc2/kernel', t, b.fc2.weight), (f'{n}/mlp/fc2/bias', None, b.fc2.bias)]
    out += [('encoder/norm/scale', None, model.norm.weight), ('encoder/norm/bias', None, model.norm.bias),
            ('head/kernel', t, model.head.weight), ('head/bias', None, model.head.bias)]
    return [(n, (f(p) if f else p).detach(), (f(p.grad) if f else p.grad).detach()) for n, f, p in out]


def record(f, name, tensor):
    data = tensor.detach().contiguous().to(torch.float32).numpy()
    raw = name.encode()
    f.write(struct.pack('<i', len(raw)) + raw + struct.pack('<i', data.ndim))
    f.write(struct.pack(f'<{data.ndim}q', *data.shape))
    f.write(data.astype('<f4').tobytes())


def main():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'vit_reference.bin')
    torch.manual_seed(0)
    x = torch.rand(B, H, W, C) * 2 - 1
    y = torch.tensor([1, 4, 0])
    with open(path, 'wb') as f:
        record(f, 'input/images', x)
        record(f, 'input/labels', y.float())
        for pooling in ('token', 'gap'):
            model = ViT(pooling)
            with torch.no_grad():  # no zero head or unit norms: every path must carry signal
                for p in model.parameters():
                    p.add_(0.1 * torch.randn_like(p))
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            record(f, f'{pooling}/logits', logits)
            record(f, f'{pooling}/loss', loss.reshape(1))
            for name, value, grad in ours(model):
                record(f, f'{pooling}/param/{name}', value)
                record(f, f'{pooling}/grad/{name}', grad)
    print('wrote', path, os.path.getsize(path), 'bytes')


if __name__ == '__main__':
    main()
