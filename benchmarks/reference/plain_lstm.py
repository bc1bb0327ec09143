#!/usr/bin/env python
"""A plain attention LSTM in one file: the yardstick that mt's recurrent model must match.

--cell gru / --cell rnn swap in torch's GRU or tanh RNN (the state is then h alone), the
yardstick of configs/gru-small.yaml and configs/rnn-small.yaml.

Deliberately minimal (no Lightning, no mt code): one-layer bidirectional encoder, a decoder started
from the encoder's final states, Luong "general" attention, no input feeding, untied output, no
dropout or label smoothing, Adam at a constant rate, length-sorted batches, gradient clipping.
It trains for a wall-clock budget on the same sentencepiece model mt uses and scores greedy
output with sacreBLEU. A large gap between this and an mt run of the same budget is a defect.

    python benchmarks/reference/plain_lstm.py --spm ~/.cache/mt/spm-.../spm.model \
        --data data/multi30k --src de --tgt en --minutes 5
    python benchmarks/reference/plain_lstm.py ... --cell rnn --steps 600   # a step budget
"""
import argparse, random, time
import sacrebleu, sentencepiece as spm, torch
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--spm", required=True); p.add_argument("--data", required=True)
p.add_argument("--src", default="de"); p.add_argument("--tgt", default="en")
p.add_argument("--eval-split", default="val"); p.add_argument("--minutes", type=float, default=5)
p.add_argument("--threads", type=int, default=2); p.add_argument("--seed", type=int, default=1)
p.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm")
p.add_argument("--steps", type=int, default=0, help="stop after this many updates (0: --minutes)")
p.add_argument("--lr", type=float, default=2e-3)
a = p.parse_args()
torch.manual_seed(a.seed); random.seed(a.seed); torch.set_num_threads(a.threads)
sp = spm.SentencePieceProcessor(model_file=a.spm); V = sp.get_piece_size(); PAD, BOS, EOS = 0, 2, 3
read = lambda split, lang: open(f"{a.data}/{split}.{lang}", encoding="utf-8").read().split("\n")[:-1]
train = list(zip(sp.encode(read("train", a.src)), sp.encode(read("train", a.tgt))))
train.sort(key=lambda p: len(p[0])); batches = [train[i:i + 64] for i in range(0, len(train), 64)]

def pad(seqs):
    out = torch.full((len(seqs), max(map(len, seqs))), PAD)
    for i, s in enumerate(seqs): out[i, :len(s)] = torch.tensor(s)
    return out

class Plain(nn.Module):
    def __init__(self, E=256, H=128):
        super().__init__()
        self.emb_s, self.emb_t = nn.Embedding(V, E, padding_idx=PAD), nn.Embedding(V, E, padding_idx=PAD)
        Cell = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[a.cell]
        self.enc = Cell(E, H, batch_first=True, bidirectional=True)
        self.dec = Cell(E, 2 * H, batch_first=True)
        self.W = nn.Linear(2 * H, 2 * H, bias=False); self.comb = nn.Linear(4 * H, 2 * H); self.out = nn.Linear(2 * H, V)
    def encode(self, src):
        lens = (src != PAD).sum(1)
        packed = nn.utils.rnn.pack_padded_sequence(self.emb_s(src), lens, batch_first=True, enforce_sorted=False)
        mem, state = self.enc(packed); mem, _ = nn.utils.rnn.pad_packed_sequence(mem, batch_first=True)
        cat = lambda s: torch.cat([s[0], s[1]], 1).unsqueeze(0)  # both directions' final states
        return mem, src == PAD, tuple(map(cat, state)) if a.cell == "lstm" else cat(state)
    def decode(self, tgt_in, mem, mask, state):
        out, state = self.dec(self.emb_t(tgt_in), state)
        scores = out @ self.W(mem).transpose(1, 2)
        att = scores.masked_fill(mask.unsqueeze(1), -1e9).softmax(-1)
        return self.out(torch.tanh(self.comb(torch.cat([att @ mem, out], -1)))), state

model = Plain(); opt = torch.optim.Adam(model.parameters(), lr=a.lr); loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
start, steps = time.time(), 0
over = lambda: steps >= a.steps if a.steps else time.time() - start >= a.minutes * 60
while not over():
    random.shuffle(batches)
    for b in batches:
        if over(): break
        src = pad([s + [EOS] for s, _ in b]); tin = pad([[BOS] + t for _, t in b]); tout = pad([t + [EOS] for _, t in b])
        logits, _ = model.decode(tin, *model.encode(src))
        loss = loss_fn(logits.flatten(0, 1), tout.flatten())
        opt.zero_grad(); loss.backward(); nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); steps += 1
minutes = (time.time() - start) / 60; model.eval(); srcs, refs = read(a.eval_split, a.src), read(a.eval_split, a.tgt); hyps = []
with torch.no_grad():
    for i in range(0, len(srcs), 100):
        src = pad([s + [EOS] for s in sp.encode(srcs[i:i + 100])]); mem, mask, state = model.encode(src)
        prev, outs = torch.full((len(src), 1), BOS), []
        for _ in range(int(src.size(1) * 1.2) + 10):
            logits, state = model.decode(prev, mem, mask, state); prev = logits.argmax(-1); outs.append(prev)
        for row in torch.cat(outs, 1).tolist():
            hyps.append(sp.decode(row[:row.index(EOS)] if EOS in row else row))
bleu = sacrebleu.corpus_bleu(hyps, [refs])
print(f"plain {a.cell.upper()}: {steps} updates in {minutes:.1f} min, final loss {loss.item():.3f}, {a.eval_split} BLEU {bleu.score:.1f}")
