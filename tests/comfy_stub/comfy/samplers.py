"""Stand-in for ``comfy.samplers`` (our code): a small ``KSampler`` that drives a model the way ComfyUI does.

The calling convention is ComfyUI's, so a model that works here meets the same interface: the model is
loaded through ``load_models_gpu`` with ``model.memory_required(...)``; each CONDITIONING entry ``[tensor,
dict]`` becomes ``model.extra_conds(**dict, cross_attn=tensor, device, noise, latent_image, ...)`` once;
every step, the cond objects are ``process_cond(batch_size=...)``-ed, cond and uncond are batched into one
``apply_model(x, sigma, **conds, transformer_options=...)`` call when ``can_concat`` allows it (their
``concat`` builds the batch), the outputs are combined ``uncond + (cond - uncond) * cfg`` (uncond skipped at
cfg 1), and Euler (``sampler="euler"``) steps over the ``simple`` (or ``normal``) sigma schedule of the
model's ``model_sampling`` (object patches such as ``ModelSamplingSD3`` included). Latents go through
``process_latent_in`` / ``noise_scaling`` first and ``inverse_noise_scaling`` / ``process_latent_out`` last.
Only ``euler`` is implemented.
"""

from __future__ import annotations

import math

import torch

import comfy.model_management

SAMPLER_NAMES = ["euler"]
SCHEDULER_NAMES = ["simple", "normal"]


def simple_scheduler(model_sampling, steps):
    sigs = []
    ss = len(model_sampling.sigmas) / steps
    for x in range(steps):
        sigs += [float(model_sampling.sigmas[-(1 + int(x * ss))])]
    sigs += [0.0]
    return torch.FloatTensor(sigs)


def normal_scheduler(model_sampling, steps):
    start = model_sampling.timestep(model_sampling.sigma_max)
    end = model_sampling.timestep(model_sampling.sigma_min)
    timesteps = torch.linspace(start, end, steps + 1)[:-1]
    return torch.FloatTensor([float(model_sampling.sigma(t)) for t in timesteps] + [0.0])


def calculate_sigmas(model_sampling, scheduler_name, steps):
    if scheduler_name == "simple":
        return simple_scheduler(model_sampling, steps)
    if scheduler_name == "normal":
        return normal_scheduler(model_sampling, steps)
    raise NotImplementedError(f"stub: scheduler {scheduler_name!r}")


def _model_conds(model, conditioning, noise, device, latent_image):
    out = []
    for tensor, options in conditioning:
        params = dict(options)
        if tensor is not None:
            params["cross_attn"] = tensor
        params.update(device=device, noise=noise, latent_image=latent_image)
        out.append(model.extra_conds(**params))
    return out


def _calc_cond_batch(model, conds, x, sigma, model_options):
    """``conds``: [cond list, uncond list or None] -> [denoised per list] (entries averaged, as areas of 1)."""
    jobs = []
    for index, cond_list in enumerate(conds):
        for entry in cond_list or []:
            jobs.append((index, {k: v.process_cond(batch_size=x.shape[0]) for k, v in entry.items()}))
    outs = [torch.zeros_like(x) for _ in conds]
    counts = [0 for _ in conds]
    while jobs:
        first = jobs[0]
        batch = [j for j in jobs if all(first[1][k].can_concat(j[1][k]) for k in first[1])]
        jobs = [j for j in jobs if not any(j is b for b in batch)]
        c = {k: batch[0][1][k].concat([b[1][k] for b in batch[1:]]) for k in first[1]}
        transformer_options = dict(model_options.get("transformer_options", {}))
        transformer_options["cond_or_uncond"] = [b[0] for b in batch]
        c["transformer_options"] = transformer_options
        output = model.apply_model(torch.cat([x] * len(batch)), torch.cat([sigma] * len(batch)), **c)
        for (index, _), chunk in zip(batch, output.chunk(len(batch))):
            outs[index] += chunk
            counts[index] += 1
    return [o / max(n, 1) for o, n in zip(outs, counts)]


class KSampler:
    SAMPLERS = SAMPLER_NAMES
    SCHEDULERS = SCHEDULER_NAMES

    def __init__(self, model, steps, device, sampler=None, scheduler=None, denoise=None, model_options={}):  # noqa: B006 (ComfyUI's signature)
        self.model = model
        self.device = device
        self.sampler = sampler
        self.scheduler = scheduler
        self.model_options = model_options
        model_sampling = model.get_model_object("model_sampling")
        denoise = 1.0 if denoise is None else denoise
        if denoise >= 0.9999:
            self.sigmas = calculate_sigmas(model_sampling, scheduler, steps)
        else:
            new_steps = int(steps / denoise)
            self.sigmas = calculate_sigmas(model_sampling, scheduler, new_steps)[-(steps + 1):]

    def sample(self, noise, positive, negative, cfg, latent_image=None, start_step=None, last_step=None,
               force_full_denoise=False, denoise_mask=None, sigmas=None, callback=None, disable_pbar=False,
               seed=None):
        if self.sampler not in SAMPLER_NAMES:
            raise NotImplementedError(f"stub: sampler {self.sampler!r} (only euler)")
        sigmas = self.sigmas if sigmas is None else sigmas
        if last_step is not None and last_step < len(sigmas) - 1:
            sigmas = sigmas[: last_step + 1]
            if force_full_denoise:
                sigmas[-1] = 0
        if start_step is not None and start_step < len(sigmas) - 1:
            sigmas = sigmas[start_step:]
        patcher = self.model
        model = patcher.model
        memory = model.memory_required([noise.shape[0] * 2] + list(noise.shape[1:]))
        comfy.model_management.load_models_gpu([patcher], memory_required=memory)
        model = patcher.model
        device = patcher.load_device
        latent = model.process_latent_in(latent_image).to(device)
        noise = noise.to(device)
        conds = [_model_conds(model, positive, noise, device, latent),
                 _model_conds(model, negative, noise, device, latent)]
        model_sampling = model.model_sampling
        sigmas = sigmas.to(device)
        x = model_sampling.noise_scaling(sigmas[0], noise, latent)
        for i in range(len(sigmas) - 1):
            sigma = sigmas[i] * x.new_ones([x.shape[0]])
            use = conds if not math.isclose(cfg, 1.0) else [conds[0], None]
            cond_out, uncond_out = _calc_cond_batch(model, use, x, sigma, self.model_options)
            denoised = cond_out if use[1] is None else uncond_out + (cond_out - uncond_out) * cfg
            if callback is not None:
                callback(i, denoised, x, len(sigmas) - 1)
            d = (x - denoised) / sigmas[i]
            x = x + d * (sigmas[i + 1] - sigmas[i])
        x = model_sampling.inverse_noise_scaling(sigmas[-1], x)
        return model.process_latent_out(x.to(torch.float32))
