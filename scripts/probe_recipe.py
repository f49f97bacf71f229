#!/usr/bin/env python3
"""A fast PyTorch probe of training recipes for the bundled model (not the trainer: the model
ships from `coconut-lens train`). A Llama from scratch on compact ProsQA (`s t .` facts),
equal-length batches, the context curriculum, Coconut recycling with the frontier loss, as in
src/train; it prints, every --eval_every steps, on 256 held-out generated problems (and every
5th time on --real): answer accuracy, and per output (<|start-latent|>, then each thought)
the share whose frontier set is exactly the top tokens ("match") and the KL to the frontier
target ("kl"). Used to decide recipes in minutes before a long Rust run.

    coconut-lens data prosqa --n 60000 --seed 7 --split probe --out pool.json
    python scripts/probe_recipe.py --pool pool.json --real prosqa_valid.json --offset 0 --spread 1

--offset 0: <|start-latent|> -> {root}, thought k -> within k hops (the trainer's
frontier_from = 0); --spread 1: each batch's share drawn below the schedule's; --reroot P:
rows asked about a concept (frontier loss only); --emb_std: the tied embedding's init.
"""
import json, math, random, time, sys, os, argparse, collections
import torch, torch.nn as nn, torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument('--pool', required=True, help='generated problems (coconut-lens data prosqa)')
ap.add_argument('--real', help='a ProsQA-schema file scored every 5th evaluation (never trained on)')
ap.add_argument('--d', type=int, default=256)
ap.add_argument('--layers', type=int, default=3)
ap.add_argument('--heads', type=int, default=4)
ap.add_argument('--ff', type=int, default=0)
ap.add_argument('--batch', type=int, default=32)
ap.add_argument('--lr', type=float, default=1e-3)
ap.add_argument('--warmup', type=int, default=200)
ap.add_argument('--steps', type=int, default=6000)
ap.add_argument('--grow', type=int, default=3000)
ap.add_argument('--f0', type=float, default=0.1)
ap.add_argument('--thoughts', type=int, default=6)
ap.add_argument('--frontier', type=float, default=1.0)
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--seed', type=int, default=0)
ap.add_argument('--emb_std', type=float, default=0.02)
ap.add_argument('--eval_every', type=int, default=100)
ap.add_argument('--tag', default='run')
ap.add_argument('--offset', type=int, default=1)
ap.add_argument('--spread', type=int, default=0)
ap.add_argument('--reroot', type=float, default=0.0)
ap.add_argument('--cot_steps', type=int, default=0, help='stage 0 (language chain, no thoughts) for the first N steps')
ap.add_argument('--earlier', type=float, default=0.0, help='after stage 0, a batch is a stage-0 batch with this probability')
args = ap.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)
rng = random.Random(args.seed)

tokj = json.load(open(os.path.join(os.path.dirname(__file__), '..', 'assets/coconut-prosqa/tokenizer.json')))
vocab = dict(tokj['model']['vocab'])
for a in tokj['added_tokens']:
    vocab[a['content']] = a['id']
V = max(vocab.values()) + 1
ID = vocab
START, END, LAT, EOS = ID['<|start-latent|>'], ID['<|end-latent|>'], ID['<|latent|>'], ID['<|endoftext|>']

pool = json.load(open(args.pool))
real = json.load(open(args.real)) if args.real else []
held = pool[:256]
train_pool = pool[256:]
by_e = collections.defaultdict(list)
for p in train_pool:
    by_e[len(p['edges'])].append(p)
depth_w = {3: 1.0, 4: 1.0, 5: 2.0, 6: 4.0}

def bfs(n, edges, root):
    ch = [[] for _ in range(n)]
    for a, b in edges:
        ch[a].append(b)
    dist = [None] * n
    dist[root] = 0
    q = [root]
    for u in q:
        for v in ch[u]:
            if dist[v] is None:
                dist[v] = dist[u] + 1
                q.append(v)
    return dist

def path_edges(p):
    sym = p['idx_to_symbol']
    idx = {s: i for i, s in enumerate(sym)}
    out = []
    at = p['root']
    for s in p['steps']:
        to = idx[s.rstrip('.').rsplit(' is a ', 1)[1]]
        out.append((at, to)); at = to
    return out

def encode(p, edges, r, reroot=0.0):
    sym = p['idx_to_symbol']
    ids = []
    for a, b in edges:
        ids += [ID[sym[a]], ID[sym[b]], ID['.']]
    t, ng = sym[p['target']], sym[p['neg_target']]
    c = [t, ng] if r.random() < 0.5 else [ng, t]
    root_i = p['root']
    score = 1.0
    if reroot > 0 and r.random() < reroot:
        # a concept with children as the query's subject: lookups from concept sources at
        # the first thought; the answer is not scored
        srcs = sorted({a for a, b in edges if not sym[a][0].isupper()})
        if srcs:
            root_i = r.choice(srcs); score = 0.0
    root = sym[root_i]
    ids += [ID['Is'], ID[root], ID['a'], ID[c[0]], ID['or'], ID[c[1]], ID['?'], ID['\n'], START]
    ans = [ID['###'], ID[root], ID['is'], ID['a'], ID[t], ID['.'], EOS]
    dist = bfs(len(sym), edges, root_i)
    # the chain of stage 0 in compact form (`s t .` then a newline per step) and, per step,
    # (position of s in the chain, children of s told in this context, gold t)
    ch = collections.defaultdict(set)
    for a, b in edges:
        ch[a].add(ID[sym[b]])
    cot, look = [], []
    for a, b in path_edges(p):
        look.append((len(cot), ch[a], ID[sym[b]]))
        cot += [ID[sym[a]], ID[sym[b]], ID['.'], ID['\n']]
    return ids, ans, dist, [ID[x] for x in sym], score, cot, look

def real_sample(p, r):
    # edges in question order
    sym = p['idx_to_symbol']; idx = {s: i for i, s in enumerate(sym)}
    q = p['question']
    facts = q[:q.rfind('Is ')].strip().split('. ')
    edges = []
    for f in facts:
        f = f.rstrip('.')
        a, b = f.rsplit(' is a ', 1)
        a = a.replace('Every ', '')
        edges.append((idx[a], idx[b]))
    return encode(p, edges, r)

def thinned(p, k, r, train=True):
    pe = path_edges(p)
    pes = set(pe)
    others = [tuple(e) for e in p['edges'] if tuple(e) not in pes]
    r.shuffle(others)
    keep = pe + others[:k - len(pe)]
    r.shuffle(keep)
    return encode(p, keep, r, args.reroot if train else 0.0)

def frac(step):
    if step >= args.grow: return 1.0
    return args.f0 + (1 - args.f0) * step / args.grow

def draw(e_lo, e_hi, r):
    while True:
        e = r.randint(e_lo, e_hi)
        if by_e.get(e):
            p = r.choice(by_e[e])
            if r.random() * 4.0 <= depth_w[len(p['steps'])]:
                return p

def make_batch(step, r):
    f = frac(step)
    if args.spread:
        f = args.f0 + (f - args.f0) * r.random()
    ref = r.choice(train_pool)
    E = len(ref['edges'])
    K = max(7, round(f * E))
    hi = min(60, int(K / f))
    rows = []
    for _ in range(args.batch):
        p = draw(K, hi, r)
        rows.append(thinned(p, K, r))
    return rows, K

class RMS(nn.Module):
    def __init__(s, d): super().__init__(); s.w = nn.Parameter(torch.ones(d))
    def forward(s, x): return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * s.w

def rope_tables(hd, n):
    inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
    ang = torch.arange(n).float()[:, None] * inv[None]
    return ang.cos(), ang.sin()

def rope(x, cos, sin):
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    c = torch.cat([cos, cos], -1); s = torch.cat([sin, sin], -1)
    rot = torch.cat([-x2, x1], -1)
    return x * c + rot * s

class Block(nn.Module):
    def __init__(s, d, h, ff):
        super().__init__()
        s.n1, s.n2 = RMS(d), RMS(d)
        s.q, s.k, s.v, s.o = [nn.Linear(d, d, bias=False) for _ in range(4)]
        s.g, s.u = nn.Linear(d, ff, bias=False), nn.Linear(d, ff, bias=False)
        s.dn = nn.Linear(ff, d, bias=False)
        s.h = h
    def forward(s, x, start, cache, cos, sin):
        B, T, D = x.shape
        hd = D // s.h
        y = s.n1(x)
        sp = lambda t: t.view(B, T, s.h, hd).transpose(1, 2)
        q, k, v = sp(s.q(y)), sp(s.k(y)), sp(s.v(y))
        c, sn = cos[start:start + T], sin[start:start + T]
        q, k = rope(q, c, sn), rope(k, c, sn)
        if cache[0] is not None:
            k = torch.cat([cache[0], k], 2); v = torch.cat([cache[1], v], 2)
        cache[0], cache[1] = k, v
        S = k.shape[2]
        if T > 1:
            mask = torch.ones(T, S, dtype=torch.bool).tril(S - T)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            a = F.scaled_dot_product_attention(q, k, v)
        x = x + s.o(a.transpose(1, 2).reshape(B, T, D))
        y = s.n2(x)
        return x + s.dn(F.silu(s.g(y)) * s.u(y))

class Net(nn.Module):
    def __init__(s, V, d, L, h, ff):
        super().__init__()
        s.emb = nn.Embedding(V, d)
        s.blocks = nn.ModuleList([Block(d, h, ff) for _ in range(L)])
        s.norm = RMS(d)
        cos, sin = rope_tables(d // h, 512)
        s.register_buffer('cos', cos, persistent=False); s.register_buffer('sin', sin, persistent=False)
        for n, p in s.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * L) if (n.endswith('o.weight') or n.endswith('dn.weight')) else 0.02
                if n == 'emb.weight': std = args.emb_std
                nn.init.normal_(p, 0, std)
    def step(s, x, start, caches):
        for b, c in zip(s.blocks, caches):
            x = b(x, start, c, s.cos, s.sin)
        return s.norm(x)
    def logits(s, h): return h @ s.emb.weight.t()

ff = args.ff or (int(8 * args.d / 3) // 32 * 32)
net = Net(V, args.d, args.layers, args.heads, ff)
nparam = sum(p.numel() for p in net.parameters())
print(f'params {nparam/1e6:.2f}M ff {ff}', flush=True)
decay = [p for n, p in net.named_parameters() if p.dim() == 2]
nodecay = [p for n, p in net.named_parameters() if p.dim() < 2]
opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.01}, {'params': nodecay, 'weight_decay': 0.0}], lr=args.lr, betas=(0.9, 0.95))

def run(rows, N, train=True, cot=False):
    """rows: list of (ids, ans, dist) with equal len(ids). Returns loss and per-thought logits;
    with cot the suffix is the chain then the answer (right-padded, padding out of the loss)."""
    B = len(rows)
    P = len(rows[0][0])
    ids = torch.tensor([r[0] for r in rows])
    caches = [[None, None] for _ in net.blocks]
    h = net.step(net.emb(ids), 0, caches)
    last = h[:, -1:]
    outs = [last]
    for j in range(N):
        last = net.step(last, P + j, caches)
        outs.append(last)
    seqs = [(r[5] if cot else []) + r[1] for r in rows]
    S = max(len(x) for x in seqs)
    suf = torch.tensor([[END] + x + [EOS] * (S - len(x)) for x in seqs])
    hs = net.step(net.emb(suf), P + N, caches)
    ans_logits = net.logits(hs[:, :-1])  # predict the chain and answer tokens
    tgt = torch.tensor([x + [EOS] * (S - len(x)) for x in seqs])
    w = torch.tensor([[r[4] * (i < len(x)) for i in range(S)] for r, x in zip(rows, seqs)], dtype=torch.float)
    ans_loss = (F.cross_entropy(ans_logits.reshape(-1, V), tgt.reshape(-1), reduction='none') * w.reshape(-1)).sum() / B
    th = net.logits(torch.cat(outs, 1))  # [B, N+1, V]
    return ans_loss, th, ans_logits

def frontier_targets(rows, N):
    # target[b, j, v]: uniform over nodes with dist <= j+1
    B = len(rows)
    T = torch.zeros(B, N + 1, V)
    for b, r in enumerate(rows):
        dist, sy = r[2], r[3]
        for j in range(N + 1):
            nodes = [sy[i] for i, d in enumerate(dist) if d is not None and d <= j + args.offset]
            T[b, j, nodes] = 1.0 / len(nodes)
    return T

def syms(ps):
    return [[ID[s] for s in p['idx_to_symbol']] for p in ps]

def evaluate(samples, symids, N):
    net.eval()
    with torch.no_grad():
        # group by prompt length
        groups = collections.defaultdict(list)
        for i, s in enumerate(samples):
            groups[len(s[0])].append(i)
        correct = 0; match = [0] * (N + 1); kl = [0.0] * (N + 1)
        for L, idxs in groups.items():
            rows = [samples[i] for i in idxs]
            _, th, al = run(rows, N, False)
            T = frontier_targets(rows, N)
            lp = F.log_softmax(th, -1)
            for b, i in enumerate(idxs):
                correct += int(al[b, 4].argmax().item() == rows[b][1][4])
                for j in range(N + 1):
                    tset = set(torch.nonzero(T[b, j]).flatten().tolist())
                    top = set(th[b, j].topk(len(tset)).indices.tolist())
                    match[j] += int(top == tset)
                    kl[j] += float(-(T[b, j] * lp[b, j]).sum() + (T[b, j][T[b, j] > 0].log() * T[b, j][T[b, j] > 0]).sum())
    net.train()
    n = len(samples)
    return correct / n, [m / n for m in match], [k / n for k in kl]

def evaluate_cot(samples):
    """Stage 0 on held problems: the share of chain steps whose top token at s is a child of s
    (the lookup), is the gold t, and the answer accuracy after the model's own chain is not
    measured here (teacher-forced chain)."""
    net.eval()
    with torch.no_grad():
        groups = collections.defaultdict(list)
        for i, s in enumerate(samples):
            groups[len(s[0])].append(i)
        child = gold = steps = 0; correct = 0
        for L, idxs in groups.items():
            rows = [samples[i] for i in idxs]
            _, _, al = run(rows, 0, False, cot=True)
            for b, r in enumerate(rows):
                for pos, kids, t in r[6]:
                    top = al[b, pos + 1].argmax().item()  # the output at s predicts t
                    child += top in kids; gold += top == t; steps += 1
                correct += int(al[b, len(r[5]) + 4].argmax().item() == r[1][4])
    net.train()
    return child / steps, gold / steps, correct / len(samples)

er = random.Random(123)
held_s = [thinned(p, len(p['edges']), er, False) for p in held]
held_sym = syms(held)
real_s = [real_sample(p, er) for p in real]
real_sym = syms(real)

t0 = time.time()
N = args.thoughts
for step in range(args.steps + 1):
    if step % args.eval_every == 0:
        acc, match, kl = evaluate(held_s, None, N)
        msg = f'EVAL step {step} held acc {acc:.3f} match ' + ' '.join(f'{m:.2f}' for m in match) + ' kl ' + ' '.join(f'{k:.2f}' for k in kl)
        if real and step % (args.eval_every * 5) == 0:
            racc, rmatch, _ = evaluate(real_s, None, N)
            msg += f' | real acc {racc:.3f} match ' + ' '.join(f'{m:.2f}' for m in rmatch)
        if args.cot_steps or args.earlier:
            c, g, a0 = evaluate_cot(held_s)
            msg += f' | cot child {c:.2f} gold {g:.2f} acc {a0:.2f}'
        print(msg + f' {time.time()-t0:.0f}s', flush=True)
    if step == args.steps: break
    lr = args.lr * min(1.0, (step + 1) / args.warmup)
    for g in opt.param_groups: g['lr'] = lr
    rows, K = make_batch(step, rng)
    stage0 = step < args.cot_steps or (args.earlier > 0 and rng.random() < args.earlier)
    n = 0 if stage0 else N
    ans_loss, th, _ = run(rows, n, cot=stage0)
    T = frontier_targets(rows, n)
    fl = -(T * F.log_softmax(th, -1)).sum(-1).sum(-1).mean()
    floor = -(T * T.clamp_min(1e-30).log()).sum(-1).sum(-1).mean()
    loss = ans_loss + args.frontier * fl
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step(); opt.zero_grad()
    if step % 20 == 0:
        print(f'step {step} K {K} s0 {int(stage0)} ans {ans_loss.item():.3f} front {fl.item():.3f} floor {floor.item():.3f} {time.time()-t0:.0f}s', flush=True)
