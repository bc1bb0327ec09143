#!/usr/bin/env python
"""A/B runs behind ``split_directions``: the standalone attention LSTM, one mt option at a time.

Trains one variant for ``--steps`` Adam steps (constant lr, clipping 1.0, no label smoothing, one
thread) in mt's own data loop and prints its validation NLL every 100 steps as one JSON line.
The variants start from the minimal model of ``plain_lstm.py`` (one bidirectional layer of 2 x 128
whose states are the attention memory, a decoder of 256 started from the encoder's final (h, c),
Luong general attention, untied embeddings N(0, 1)) and add one of mt's choices:

    ref            the minimal model
    ref_memproj    + a linear memory projection 2H -> H (mt before split_directions)
    ref_tanh       + mt's bridge: tanh(W [h_fwd; h_bwd] + b) instead of copying (h, c)
    ref_embmt      + mt's embeddings: N(0, 1/E), multiplied by sqrt(E)
    ref_shared     + one embedding matrix for source and target
    ref_mtlike     + bridge, embeddings and projection together
    mt             mt.models.rnn.RNNSeq2Seq, 1+1 layers of 256, untied, no dropout (split_directions)
    mt_projected   the same with split_directions false (2 x 256 encoder and a projection)
    mt_small       lstm-small's shape at width 256: 2+2 layers, tied, dropout 0.1

    python scripts/make_synthetic.py --out data/syn40 --train-size 30000 --val-size 500 \
        --train-lengths 5 40 --val-lengths 5 40 --test-bands 5-40
    python benchmarks/reference/memory_ablation.py --variant ref_memproj --steps 300
"""
import argparse, json, math, time
import torch, torch.nn.functional as F
from torch import nn
from mt.data.datamodule import TranslationDataModule
from mt.models.rnn import BiRNNEncoder, RNNSeq2Seq
from mt.data.tokenizer import PAD_ID

p = argparse.ArgumentParser()
p.add_argument("--variant", required=True); p.add_argument("--steps", type=int, default=300)
p.add_argument("--seed", type=int, default=1); p.add_argument("--data", default="data/syn40")
p.add_argument("--src", default="src"); p.add_argument("--tgt", default="tgt")
p.add_argument("--vocab", type=int, default=500); p.add_argument("--lr", type=float, default=2e-3)
a = p.parse_args()
torch.set_num_threads(1)
dm = TranslationDataModule(data_dir=a.data, src_lang=a.src, tgt_lang=a.tgt, vocab_size=a.vocab,
                           tokenizer_type="bpe", max_tokens=2048, num_workers=0, seed=1, test_split="val")
dm.prepare_data(); dm.setup("fit")
V = dm.tokenizer.vocab_size
torch.manual_seed(a.seed)

class Ref(nn.Module):
    def __init__(self, emb="ref", bridge="copy", shared=False, memproj=False, E=256, H=128):
        super().__init__()
        self.emb_s = nn.Embedding(V, E, padding_idx=PAD_ID)
        self.emb_t = self.emb_s if shared else nn.Embedding(V, E, padding_idx=PAD_ID)
        self.scale = math.sqrt(E) if emb == "mt" else 1.0
        if emb == "mt":
            for e in {id(m): m for m in [self.emb_s, self.emb_t]}.values():
                nn.init.normal_(e.weight, std=E ** -0.5)
                with torch.no_grad(): e.weight[PAD_ID].zero_()
        self.copy = bridge == "copy"
        if self.copy:  # packed, for the exact final cell states
            self.enc = nn.LSTM(E, H, batch_first=True, bidirectional=True)
        else:
            self.enc = BiRNNEncoder(E, H, 1, 0.0)
            self.bridge = nn.Linear(2 * H, 4 * H)
        D = 2 * H
        self.memproj = nn.Linear(D, D) if memproj else None
        self.dec = nn.LSTM(E, D, batch_first=True)
        self.W = nn.Linear(D, D, bias=False); self.comb = nn.Linear(2 * D, D); self.out = nn.Linear(D, V)
    def forward(self, src, mask, tgt_in):
        x = self.emb_s(src) * self.scale
        if self.copy:
            packed = nn.utils.rnn.pack_padded_sequence(x, (~mask).sum(1), batch_first=True, enforce_sorted=False)
            mem, (h, c) = self.enc(packed)
            mem, _ = nn.utils.rnn.pad_packed_sequence(mem, batch_first=True, total_length=src.size(1))
            cat = lambda s: torch.cat([s[0], s[1]], 1).unsqueeze(0)
            state = (cat(h), cat(c))
        else:
            mem, finals = self.enc(x, mask)
            state = tuple(t.contiguous() for t in torch.tanh(self.bridge(finals)).chunk(2, dim=2))
        if self.memproj is not None:
            mem = self.memproj(mem).masked_fill(mask.unsqueeze(2), 0)
        out, _ = self.dec(self.emb_t(tgt_in) * self.scale, state)
        scores = (out @ self.W(mem).transpose(1, 2)).masked_fill(mask.unsqueeze(1), float("-inf"))
        return self.out(torch.tanh(self.comb(torch.cat([scores.softmax(-1) @ mem, out], -1))))

def mt(**kw):
    args = dict(embed_dim=256, hidden_size=256, encoder_layers=1, decoder_layers=1, input_feeding=False,
                dropout=0.0, share_embeddings=False, tie_output=False, label_smoothing=0.0)
    return RNNSeq2Seq(vocab_size=V, **{**args, **kw})

model = {
    "ref": lambda: Ref(), "ref_memproj": lambda: Ref(memproj=True), "ref_tanh": lambda: Ref(bridge="tanh"),
    "ref_embmt": lambda: Ref(emb="mt"), "ref_shared": lambda: Ref(shared=True),
    "ref_mtlike": lambda: Ref(emb="mt", bridge="tanh", memproj=True),
    "mt": lambda: mt(), "mt_projected": lambda: mt(split_directions=False),
    "mt_small": lambda: mt(encoder_layers=2, decoder_layers=2, share_embeddings=True, tie_output=True, dropout=0.1),
}[a.variant]()
opt = torch.optim.Adam(model.parameters(), lr=a.lr)

def val_nll():
    model.eval(); total = n = 0
    with torch.no_grad():
        for b in dm.val_dataloader():
            lp = model(b.src, b.src_pad_mask, b.tgt_in).float().log_softmax(-1)
            total += F.nll_loss(lp.flatten(0, 1), b.tgt_out.flatten(), ignore_index=PAD_ID, reduction="sum").item()
            n += b.n_tgt_tokens
    model.train(); return total / n

curve, start, step = [], time.time(), 0
while step < a.steps:
    for b in dm.train_dataloader():
        logits = model(b.src, b.src_pad_mask, b.tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), b.tgt_out.flatten(), ignore_index=PAD_ID)
        opt.zero_grad(); loss.backward(); nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
        step += 1
        if step % 100 == 0: curve.append((step, round(val_nll(), 3)))
        if step == a.steps: break
print(json.dumps({"variant": a.variant, "seed": a.seed, "params": sum(p.numel() for p in model.parameters()),
                  "val_nll": curve, "seconds": round(time.time() - start)}))
