"""microgpt's model and schedule in PyTorch or JAX, for `microgpt bench` to time.

The same model as microgpt.py (rmsnorm without gain, no biases, ReLU, separate lm_head),
the same shapes and Adam settings, trained for --steps steps on the names shuffled as
microgpt.py shuffles them (random.seed(42)). It is a timing peer, not a bit-for-bit one:
the initial weights are the framework's own draws. Prints "train seconds: S" and
"tokens: N" (the predicted positions trained on).

  python3 framework_peer.py --framework torch --data names.txt --config micro --steps 1000
  python3 framework_peer.py --framework jax --data names.txt --config makemore --batch 32 --steps 50

PyTorch runs eagerly (on --threads threads), on each batch at its own length. JAX compiles one
step for batches padded to the context (the usual way to keep it from recompiling),
and its compile time is reported apart ("compile seconds: S").
"""

import argparse
import random
import time

CONFIGS = {"micro": (16, 4, 1), "makemore": (64, 4, 4)}  # embd, heads, layers
BLOCK = 16


def batches(path, batch, steps, vocab_out):
    docs = [l.strip() for l in open(path, encoding="utf-8") if l.strip()]
    random.seed(42)
    random.shuffle(docs)
    chars = sorted(set("".join(docs)))
    vocab_out.extend(chars)
    stoi = {c: i for i, c in enumerate(chars)}
    bos = len(chars)
    at = 0
    for _ in range(steps):
        rows = []
        for _ in range(batch):
            doc = docs[at % len(docs)]
            at += 1
            toks = [bos] + [stoi[c] for c in doc] + [bos]
            n = min(BLOCK, len(toks) - 1)
            rows.append((toks[:n], toks[1 : n + 1]))
        yield rows


def shapes(V, E, T, layers):
    """microgpt's state_dict: each tensor's name and shape, in its order."""
    top = [("wte", (V, E)), ("wpe", (T, E)), ("lm_head", (V, E))]
    block = [("wq", (E, E)), ("wk", (E, E)), ("wv", (E, E)), ("wo", (E, E)),
             ("fc1", (4 * E, E)), ("fc2", (E, 4 * E))]
    return top + [(f"{l}.{k}", shape) for l in range(layers) for k, shape in block]


def lr_at(step, steps):
    return 0.01 * (1 - step / steps)


def run_torch(args, embd, heads, layers):
    import torch

    torch.set_num_threads(args.threads)
    vocab = []
    data = list(batches(args.data, args.batch, args.steps, vocab))
    V, E, T = len(vocab) + 1, embd, BLOCK
    g = torch.Generator().manual_seed(42)

    def w(*shape):
        return (torch.randn(*shape, generator=g) * 0.08).requires_grad_()

    params = {name: w(*shape) for name, shape in shapes(V, E, T, layers)}
    opt = torch.optim.Adam(params.values(), lr=0.01, betas=(0.85, 0.99), eps=1e-8)
    rms = lambda x: x * (x.pow(2).mean(-1, keepdim=True) + 1e-5).rsqrt()

    def loss_of(rows):
        n = max(len(r[0]) for r in rows)
        x = torch.zeros(len(rows), n, dtype=torch.long)
        y = torch.full((len(rows), n), -1, dtype=torch.long)
        for i, (a, b) in enumerate(rows):
            x[i, : len(a)] = torch.tensor(a)
            y[i, : len(b)] = torch.tensor(b)
        h = rms(params["wte"][x] + params["wpe"][:n])
        mask = torch.ones(n, n).tril().bool()
        for l in range(layers):
            p = lambda k: params[f"{l}.{k}"]
            a = rms(h)
            q, k, v = (a @ p(m).T for m in ("wq", "wk", "wv"))
            split = lambda t: t.view(len(rows), n, heads, E // heads).transpose(1, 2)
            att = (split(q) @ split(k).transpose(-1, -2)) / (E // heads) ** 0.5
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)
            y_ = (att @ split(v)).transpose(1, 2).reshape(len(rows), n, E)
            h = h + y_ @ p("wo").T
            h = h + torch.relu(rms(h) @ p("fc1").T) @ p("fc2").T
        logits = h @ params["lm_head"].T
        return torch.nn.functional.cross_entropy(logits.view(-1, V), y.view(-1), ignore_index=-1)

    start = time.perf_counter()
    tokens = 0
    for step, rows in enumerate(data):
        if step == args.warmup:
            start, tokens = time.perf_counter(), 0
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps)
        opt.zero_grad()
        loss_of(rows).backward()
        opt.step()
        tokens += sum(len(r[0]) for r in rows)
    return time.perf_counter() - start, tokens, 0.0


def run_jax(args, embd, heads, layers):
    import os

    if args.threads == 1:
        # XLA's CPU backend uses every core unless told otherwise.
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    import jax
    import jax.numpy as jnp
    import numpy as np

    vocab = []
    data = list(batches(args.data, args.batch, args.steps, vocab))
    V, E, T = len(vocab) + 1, embd, BLOCK
    keys = iter(jax.random.split(jax.random.PRNGKey(42), 3 + 6 * layers))
    w = lambda *shape: jax.random.normal(next(keys), shape) * 0.08
    params = {name: w(*shape) for name, shape in shapes(V, E, T, layers)}
    rms = lambda x: x * jax.lax.rsqrt((x**2).mean(-1, keepdims=True) + 1e-5)
    causal = jnp.tril(jnp.ones((T, T), bool))

    def loss_of(params, x, y, valid):
        B = x.shape[0]
        h = rms(params["wte"][x] + params["wpe"][None])
        for l in range(layers):
            p = lambda k: params[f"{l}.{k}"]
            a = rms(h)
            split = lambda t: t.reshape(B, T, heads, E // heads).transpose(0, 2, 1, 3)
            q, k, v = (split(a @ p(m).T) for m in ("wq", "wk", "wv"))
            att = jnp.where(causal, q @ k.transpose(0, 1, 3, 2) / (E // heads) ** 0.5, -jnp.inf)
            y_ = (jax.nn.softmax(att, -1) @ v).transpose(0, 2, 1, 3).reshape(B, T, E)
            h = h + y_ @ p("wo").T
            h = h + jax.nn.relu(rms(h) @ p("fc1").T) @ p("fc2").T
        logp = jax.nn.log_softmax(h @ params["lm_head"].T, -1)
        nll = -jnp.take_along_axis(logp, y[..., None], -1)[..., 0]
        return (nll * valid).sum() / valid.sum()

    @jax.jit
    def step(params, m, v, t, lr, x, y, valid):
        grads = jax.grad(loss_of)(params, x, y, valid)
        m = jax.tree.map(lambda m, g: 0.85 * m + 0.15 * g, m, grads)
        v = jax.tree.map(lambda v, g: 0.99 * v + 0.01 * g * g, v, grads)
        upd = lambda p, m, v: p - lr * (m / (1 - 0.85**t)) / (jnp.sqrt(v / (1 - 0.99**t)) + 1e-8)
        return jax.tree.map(upd, params, m, v), m, v

    def arrays(rows):
        x = np.zeros((len(rows), T), np.int32)
        y = np.zeros((len(rows), T), np.int32)
        valid = np.zeros((len(rows), T), np.float32)
        for i, (a, b) in enumerate(rows):
            x[i, : len(a)], y[i, : len(b)], valid[i, : len(a)] = a, b, 1.0
        return x, y, valid

    zeros = jax.tree.map(jnp.zeros_like, params)
    m, v = zeros, zeros
    start = time.perf_counter()
    step(params, m, v, 1.0, 0.0, *arrays(data[0]))[0]["wte"].block_until_ready()
    compile_secs = time.perf_counter() - start
    start = time.perf_counter()
    tokens = 0
    for i, rows in enumerate(data):
        if i == args.warmup:
            params["wte"].block_until_ready()
            start, tokens = time.perf_counter(), 0
        params, m, v = step(params, m, v, float(i + 1), lr_at(i, args.steps), *arrays(rows))
        tokens += sum(len(r[0]) for r in rows)
    params["wte"].block_until_ready()
    return time.perf_counter() - start, tokens, compile_secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--framework", choices=["torch", "jax"], required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="micro")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=0, help="untimed steps at the start, of --steps")
    ap.add_argument("--threads", type=int, default=1, help="threads (JAX: 1, or all cores)")
    args = ap.parse_args()
    run = run_torch if args.framework == "torch" else run_jax
    secs, tokens, compile_secs = run(args, *CONFIGS[args.config])
    print(f"train seconds: {secs:.6f}")
    print(f"tokens: {tokens}")
    print(f"compile seconds: {compile_secs:.6f}")


if __name__ == "__main__":
    main()
