"""One run: load the model, build the task's samples, and for each sample reset -> ingest -> answer
while timing and measuring from outside. Results are written atomically into the run folder."""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from harness import card, card_build, env, io
from harness.measure import NVML, Clock, Phase
from harness.models import LoadedModel, ModelConfig, load, resolve_device
from harness.prompt import cut, encode, find_stop, prompt_kind
from harness.registry import ConfigError, build_config
from harness.settings import RunConfig
from harness.summary import summarize, write_summary

PHASE_KEYS = ("host_peak_rss_bytes", "gpu_peak_allocated_bytes", "gpu_peak_reserved_bytes", "gpu_process_peak_bytes", "gpu_device_peak_bytes")


def _plain(node: Any) -> dict:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})


def build(cfg: DictConfig) -> tuple[ModelConfig, Any, Any, dict]:
    """Validate every config group before anything heavy happens; errors name the field."""
    from methods import REGISTRY as METHODS
    from tasks import REGISTRY as TASKS

    for group in ("model", "method", "task"):
        if group not in cfg or cfg[group] is None or "name" not in cfg[group]:
            raise ConfigError(f"missing config group '{group}' (e.g. {group}=<name>)")
    method_vals, task_vals = _plain(cfg.method), _plain(cfg.task)
    method_cls = METHODS.get(method_vals.pop("name"))
    task_cls = TASKS.get(task_vals.pop("name"))
    model_cfg = build_config(ModelConfig, _plain(cfg.model), "model")
    from methods.base import KV_FIELDS, kv_unsupported

    own = {f.name for f in fields(method_cls.Config)}
    stray = [k for k in KV_FIELDS if k in method_vals and k not in own]
    if stray:
        raise ConfigError(kv_unsupported(method_cls.name, stray[0]))
    method_cfg = build_config(method_cls.Config, method_vals, "method")
    task_cfg = build_config(task_cls.Config, task_vals, "task")
    run = asdict(build_config(RunConfig, _plain(cfg.get("run")), "run"))  # timeout_s is enforced by harness.launch
    if run["persist"] and not method_cls.persistable:
        raise ConfigError(f"invalid value for 'run.persist': true, but method '{method_cls.name}' cannot save its memory")
    return model_cfg, (method_cls, method_cfg), (task_cls, task_cfg), run


def measure_sample(method: Any, lm: LoadedModel, ctx: Any, q: Any, max_new: int, nvml: NVML, stop: Sequence[str] = (),
                   persist: bool = False) -> tuple[dict, list[int]]:
    """Reset, ingest, answer; return the per-sample metrics and the generated token ids.

    With ``stop`` strings, the answer is decoded after every token and the method's generator is
    closed as soon as the text holds one (``harness.prompt.find_stop``): no further token is
    computed or timed, and ``n_tokens`` counts the tokens up to the one that completed the stop.
    The check reads each token on the host (greedy decoding does so anyway for its EOS test) and
    decodes a few dozen ids, microseconds inside the next inter-token gap.

    With ``persist``, the memory is saved after ingest, the method reset and the memory restored
    before answering (outside the measured phases), so the answer comes from the restored memory.
    """
    clock = Clock(lm.device)
    method.reset()
    with Phase(lm.device, nvml) as p_ingest, card.Mark(lm.device) as k_ingest:
        clock.stamp()
        method.ingest(ctx)
        clock.stamp()
    state, state_peak = method.state_bytes(), method.state_bytes_peak()
    kept = card.persist_round_trip(method) if persist else None
    tokens: list[Any] = []
    seen: list[int] = []  # host copies, only when stop strings are checked
    stopped = False
    with Phase(lm.device, nvml) as p_answer, card.Mark(lm.device) as k_answer:
        clock.stamp()  # the question arrives
        gen = method.answer(q, max_new)
        try:
            for tok in gen:
                clock.stamp()
                tokens.append(tok)
                if stop:
                    seen.append(int(tok))
                    if find_stop(lm.tokenizer.decode(seen, skip_special_tokens=True), stop) is not None:
                        stopped = True
                        break
        finally:
            if hasattr(gen, "close"):  # a generator: runs the method's cleanup (hooks, presses) when stopped early
                gen.close()
    t = clock.seconds()  # the one synchronisation
    ids = [int(x) for x in tokens]
    n, ctx_tokens = len(ids), ctx.num_tokens
    ingest_s, ans = t[1] - t[0], [x - t[2] for x in t[2:]]  # ans[0] = 0 (question), ans[i] = token i
    finish = "stop" if stopped else "eos" if ids and ids[-1] in lm.eos_ids else "max_new_tokens" if n >= max_new else "method"
    m: dict[str, Any] = {"context_tokens": ctx_tokens, "question_tokens": len(q.ids), "n_tokens": n, "finish": finish}
    m["ingest_s"] = ingest_s
    m["ingest_tok_per_s"] = ctx_tokens / ingest_s if ingest_s > 0 else None
    if m["ingest_tok_per_s"] is None:
        m["ingest_tok_per_s_reason"] = "ingest took no measurable time"
    m["ttft_query_s"] = ans[1] if n else None
    m["ttft_cold_s"] = ingest_s + ans[1] if n else None
    m["itl_s"] = [b - a for a, b in zip(ans[1:], ans[2:])]
    m["e2e_s"] = ans[-1] if n else None
    if not n:  # e.g. the first token was end-of-sequence, or no token was asked for
        for k in ("ttft_query_s", "ttft_cold_s", "e2e_s"):
            m[k + "_reason"] = "no token generated"
    if n > 1:
        m["tpot_s"] = (m["e2e_s"] - m["ttft_query_s"]) / (n - 1)
        m["decode_tok_per_s"] = (n - 1) / sum(m["itl_s"])
    else:
        for k in ("tpot_s", "decode_tok_per_s"):
            m[k], m[k + "_reason"] = None, "no token generated" if not n else "fewer than 2 tokens generated"
        m["itl_s_reason"] = "no inter-token gap: " + ("no token generated" if not n else "only 1 token generated")
    m["state_bytes"] = int(state)
    m["state_bytes_peak"] = int(state_peak) if state_peak is not None else None
    if state_peak is None:
        m["state_bytes_peak_reason"] = f"method '{method.name}' does not track its peak"
    m["attended_tokens"] = int(method.attended_tokens())
    m["card"] = {"ingest": k_ingest.result(p_ingest.result), "answer": k_answer.result(p_answer.result)}
    if kept is not None:
        m["persist"] = kept
    m.update(method.extra_metrics())
    for phase, res in (("ingest", p_ingest.result), ("answer", p_answer.result)):
        for k, v in res.items():
            m[f"{k}_{phase}" if not k.endswith("_reason") else f"{k[:-7]}_{phase}_reason"] = v
    for k in PHASE_KEYS:
        vals = [r[k] for r in (p_ingest.result, p_answer.result) if r.get(k) is not None]
        m[k] = max(vals) if vals else None
        if not vals:
            m[k + "_reason"] = p_ingest.result.get(k + "_reason", "not measured")
    e_in, e_out = p_ingest.result.get("energy_j"), p_answer.result.get("energy_j")
    m["j_per_ingested_token"] = e_in / ctx_tokens if e_in is not None else None
    m["j_per_generated_token"] = e_out / n if e_out is not None and n else None
    for k in ("j_per_ingested_token", "j_per_generated_token"):
        if m[k] is None:
            m[k + "_reason"] = p_ingest.result.get("energy_j_reason", "no tokens")
    return m, ids


def execute(cfg: DictConfig, out: Path) -> dict:
    """Run one configuration into ``out``; returns the summary. Raises ConfigError on bad input."""
    out = Path(out)
    model_cfg, (method_cls, method_cfg), (task_cls, task_cfg), run = build(cfg)
    io.write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    seed = int(cfg.get("seed", 0))
    io.write_json(out / "env.json", env.collect(seed))
    task = task_cls(task_cfg)
    rows: list[dict] = []
    status, error = "ok", None
    t_start = time.time()
    load_info: dict[str, Any] = {}
    method_info: dict[str, Any] = {}
    prompt_info: dict[str, Any] = {}
    load_card: dict[str, Any] | None = None
    device_type = "cpu"
    try:
        device = resolve_device(model_cfg.device)
        device_type = device.type
        one_time = card.one_time_model_work(model_cfg)  # GGUF conversion in its own process, outside the load phase
        nvml = NVML(device)
        base: dict[str, Any] = {}
        if device.type == "cuda":
            torch.zeros(1, device=device)  # the CUDA context is runtime, created before the baseline

        def before_weights() -> None:
            card.import_model_code(model_cfg)
            base["runtime_rss_bytes"] = card.rss_now()
            used = nvml.used()[0] if nvml.handle is not None else -1
            if used >= 0:
                base["runtime_nvml_bytes"] = used

        with Phase(device, nvml) as p_load, card.Mark(device) as k_load:  # memory: load + method construction
            t0 = time.perf_counter()
            lm = load(model_cfg, before_weights)
            card.make_resident(list(lm.model.parameters()) + list(lm.model.buffers()))
            load_s = time.perf_counter() - t0
            method = method_cls(method_cfg, lm)
        eos_ids = set(lm.eos_ids)
        if run["ignore_eos"]:  # generate exactly max_new_tokens (efficiency presets)
            lm.eos_ids = set()
        method_info = method.describe()
        load_card = {**base, "mark": k_load.result(p_load.result), "weights_bytes": lm.weights_bytes,
                     "method_param_bytes": method.extra_bytes(), "one_time": one_time}
        load_info = {"load_s": load_s, **p_load.result, "weights_bytes": lm.weights_bytes + method.extra_bytes(), "dtype": str(lm.dtype).replace("torch.", ""), "device": str(lm.device), **lm.quant_info}
        samples = task.samples(lm.tokenizer, seed)
        if run["limit"]:
            samples = samples[: run["limit"]]
        encoded = [encode(s, lm.tokenizer, model_cfg.chat, task_cfg.template) for s in samples]
        kinds = [prompt_kind(s, model_cfg.chat, task_cfg.template) for s in samples]
        stop = [] if run["ignore_eos"] else list(task_cfg.stop)  # ignore_eos: exactly max_new_tokens, stop strings only cut the text
        prompt_info = {"chat": model_cfg.chat, "template": task_cfg.template, "stop": stop, "kinds": {k: kinds.count(k) for k in sorted(set(kinds))}}
        for ctx, _ in encoded:
            method.validate(ctx.num_tokens)
        max_new = run["max_new_tokens"] or task_cfg.max_new_tokens
        for i in range(min(run["warmup"], len(encoded))):  # excluded from results
            measure_sample(method, lm, *encoded[i], max_new, nvml, stop, run["persist"])
        progress = _progress(len(samples), f"{method_cls.name} × {task_cls.name}", run["progress"])
        correct = 0.0
        for s, (ctx, q) in zip(samples, encoded):
            rep, t_rep = 0, time.perf_counter()
            while rep < run["repetitions"] or time.perf_counter() - t_rep < run["min_duration_s"]:
                m, ids = measure_sample(method, lm, ctx, q, max_new, nvml, stop, run["persist"])
                text = cut(lm.tokenizer.decode([i for i in ids if i not in eos_ids], skip_special_tokens=True), task_cfg.stop)
                score = float(task.score(s, text))
                rows.append({"id": s.id, "rep": rep, **s.slices, "slices": s.slices, "category": s.category, "context_id": s.context_id, "prediction": text, "answers": s.answers, "score": score, **m})
                if rep == 0:
                    correct += score
                rep += 1
            progress.update(1)
            progress.set_postfix(acc=f"{correct / progress.n:.2f}")
        progress.close()
    except ConfigError:
        status = "config_error"  # bad input leaves no result behind (see finally)
        raise
    except BaseException as e:
        status = "oom" if isinstance(e, torch.cuda.OutOfMemoryError) else ("interrupted" if isinstance(e, KeyboardInterrupt) else "failed")
        error = {"type": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()}
        if isinstance(e, KeyboardInterrupt):
            raise
    finally:
        if status != "config_error":
            io.write_jsonl(out / "samples.jsonl", rows)
            summary = summarize(rows, task_cls.metric)
            summary.update({
                "status": status, "error": error, "method": method_cls.name, "task": task_cls.name, "model": model_cfg.name,
                "method_config": asdict(method_cfg), "method_info": method_info, "task_config": asdict(task_cfg), "prompt": prompt_info, "run": run, "load": load_info,
                "wall_s": time.time() - t_start, "seed": seed,
            })
            summary["memory"] = card_build.build(load_card, rows, device_type) if load_card else {"required_bytes": None, "required_bytes_reason": "the model did not load"}
            if run["persist"] and load_card:
                summary["memory"]["persist"] = card_build.persist_summary(rows)
            write_summary(out, summary)
    return summary


class _NoBar:
    n = 0

    def update(self, k: int) -> None:
        self.n += k

    def set_postfix(self, **kw: Any) -> None: ...

    def close(self) -> None: ...


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True)
